"""Intake: concept notes from entity systems and people, screening, the programme pipeline."""
