"""A3C: asynchronous advantage actor-critic (Mnih et al. 2016), workers on a shared model."""
