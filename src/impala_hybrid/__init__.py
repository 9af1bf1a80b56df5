"""impala-hybrid: IMPALA with V-trace for hybrid actions and multiple objectives.

Importing the package registers the UAV emergency-response simulator with Gymnasium as
``impala_hybrid/UAVNet-v0`` (single env via ``gymnasium.make``, native batched vector env via
``gymnasium.make_vec``). Entry points are strings, so Numba and the kernels load only on use.
"""

from __future__ import annotations

import gymnasium

from impala_hybrid.validation import ConfigError

__version__ = "0.1.0"

UAVNET_ID = "impala_hybrid/UAVNet-v0"

if UAVNET_ID not in gymnasium.registry:
    gymnasium.register(
        id=UAVNET_ID,
        entry_point="impala_hybrid.envs.env:UAVNetEnv",
        vector_entry_point="impala_hybrid.envs.vector:UAVNetVectorEnv",
    )
    # Small test envs (see impala_hybrid.envs.toys).
    gymnasium.register(
        id="impala_hybrid/ParamChoice-v0", entry_point="impala_hybrid.envs.toys:ParamChoiceEnv"
    )
    gymnasium.register(
        id="impala_hybrid/Target-v0", entry_point="impala_hybrid.envs.toys:TargetEnv"
    )
    gymnasium.register(  # vector only: a two-objective toy for preference conditioning
        id="impala_hybrid/TradeOff-v0",
        entry_point=None,
        vector_entry_point="impala_hybrid.envs.toys:TradeOffVectorEnv",
    )

__all__ = ["UAVNET_ID", "ConfigError", "__version__"]
