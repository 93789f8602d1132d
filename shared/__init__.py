"""What every service shares: event contracts and the plumbing, each piece once.

Services import from here and never from each other (see README, "Architecture")."""
