"""Monitoring service (its domain arrives with its own issue; today it runs the shared runtime)."""
