"""The four services. Each folder is read alone; none imports another (tests/contract checks)."""
