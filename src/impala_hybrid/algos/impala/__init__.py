"""IMPALA: V-trace actor-critic (Espeholt et al. 2018)."""
