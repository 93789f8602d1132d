"""`mptf`: the operators' command line (typer + rich)."""
