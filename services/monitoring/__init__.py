"""Monitoring: reports, results, spending, overdue detection, closure, the portfolio view."""
