"""Experiment specs and presets."""
