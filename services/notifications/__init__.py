"""Notifications: who is told what, how, and whether it arrived."""
