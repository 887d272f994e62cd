"""Scores and experiment aggregation."""
