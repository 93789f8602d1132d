"""The operator console: one live page over the four services and the broker."""
