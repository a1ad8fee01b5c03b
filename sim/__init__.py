"""The MuJoCo D'Claw: the Gymnasium env `DClawTurnFixed-v0` and (later) the Dynamixel bus emulator.

Importing this package registers the env id; it loads nothing heavy until the env is made.
"""

import gymnasium

from dclaw.task import EPISODE_STEPS

ENV_ID = "DClawTurnFixed-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID, entry_point="sim.env:DClawTurnFixedEnv", max_episode_steps=EPISODE_STEPS
    )
