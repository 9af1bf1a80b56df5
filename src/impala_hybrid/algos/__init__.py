"""Learning algorithms: each has config.py, learner.py (no processes) and actor.py."""
