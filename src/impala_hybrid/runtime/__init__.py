"""Runtimes that only move data between actors and learners: serial, local processes, Ray."""
