"""The runner's `sim` backend: the MuJoCo D'Claw in-process, behind robot/backend.py's protocol.

Imports nothing from `robot/` (the protocol is structural): the runner's light install works
without MuJoCo, and `dclaw run --backend sim` loads this module only when asked.
A write sets the position targets and advances one control period (40 physics steps) at once;
the runner's deadline clock paces the ticks to 10 Hz, or not with --unpaced.
"""

from __future__ import annotations

import time
from typing import Any

import mujoco
import numpy as np

from dclaw import task
from sim.env import DClawTurnFixedEnv


class SimState:
    """Duck-typed robot.backend.RobotState (no import of robot/ from sim/)."""

    def __init__(self, qpos, qvel, valve, now):
        self.qpos, self.qvel, self.valve, self.time = qpos, qvel, valve, now
        self.current_ma: dict[int, float] = {}
        self.temperature_c: dict[int, float] = {}
        self.ok = True


class SimBackend:
    name = "sim"

    def __init__(self, seed: int | None = None):
        self.env = DClawTurnFixedEnv()
        self.seed = seed

    def connect(self) -> None:
        self.env.reset(seed=self.seed)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "physics": f"MuJoCo {mujoco.__version__}"}

    def _state(self) -> SimState:
        env = self.env
        return SimState(env.claw_qpos.copy(), env.claw_qvel.copy(), env.valve_angle,
                        time.monotonic())

    def reset(self) -> SimState:
        self.env.reset()
        return self._state()

    def read(self) -> SimState:
        return self._state()

    def write(self, targets: np.ndarray) -> None:
        env = self.env
        env.data.ctrl[: task.N_JOINTS] = task.bound_joint_targets(targets, env.claw_qpos)
        mujoco.mj_step(env.model, env.data, nstep=task.FRAME_SKIP)

    def keepalive(self) -> None:
        pass

    def stop(self, reason: str) -> None:
        self.env.data.ctrl[: task.N_JOINTS] = self.env.claw_qpos  # hold where it is

    def close(self) -> None:
        self.env.close()
