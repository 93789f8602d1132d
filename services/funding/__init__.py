"""Funding: the Fund's ledger, Steering Committee decisions, allocations and transfers."""
