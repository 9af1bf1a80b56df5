"""Deterministic evaluation rollouts on fixed seeds, metrics and reports."""
