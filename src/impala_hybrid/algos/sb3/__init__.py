"""Stable-Baselines3 baselines (A2C, PPO, SAC, TD3) on our envs, evaluated by our code.

``relaxation.py`` (hybrid action -> one Box), ``vec_env.py`` (our vector env as an SB3
``VecEnv``).
"""
