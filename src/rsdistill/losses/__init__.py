"""Loss terms, each in one place."""
