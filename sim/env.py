"""`DClawTurnFixed-v0` on the official MuJoCo bindings, equal in behaviour to ROBEL's env.

The task's numbers and functions come from `dclaw.task`; this module only moves the physics.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces

from dclaw import task
from sim.assets import model_path

VALVE_JOINT = "valve_OBJRx"
TARGET_BODY = "target"
DEFAULT_CAMERA = "object_target"  # looks down on the valve from above the claw


class RenderUnavailableError(RuntimeError):
    """No offscreen OpenGL context could be created for rendering."""


class DClawTurnFixedEnv(gymnasium.Env):
    """Turn the valve from 0 to pi with the three-fingered D'Claw (ROBEL `DClawTurnFixed-v0`).

    Use `gymnasium.make("DClawTurnFixed-v0")`, which adds the 40-step time limit.
    """

    metadata: ClassVar[dict] = {
        "render_modes": ["rgb_array"],
        "render_fps": round(1 / task.CONTROL_PERIOD),
    }

    def __init__(self, render_mode: str | None = None, width: int = 480, height: int = 480):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', not {render_mode!r}")
        self.render_mode = render_mode
        self._size = (height, width)
        self.model = mujoco.MjModel.from_xml_path(str(model_path()))
        if not np.isclose(self.model.opt.timestep, task.PHYSICS_TIMESTEP):
            raise RuntimeError(f"unexpected model timestep {self.model.opt.timestep}")
        self.data = mujoco.MjData(self.model)
        valve = self.model.joint(VALVE_JOINT)
        self._valve_qpos = int(valve.qposadr[0])
        self._valve_dof = int(valve.dofadr[0])
        # Claw joints are the model's first nine, in ROBEL's motor order (10, 11, 12, 20, ... 32).
        self._claw = slice(0, task.N_JOINTS)
        # Show the goal: ROBEL turns the target body to the (unwrapped) goal angle.
        half = task.TARGET_VALVE_ANGLE / 2
        self.model.body(TARGET_BODY).quat[:] = [np.cos(half), 0.0, 0.0, np.sin(half)]
        self._goal = task.stored_target()
        self._last_action = np.zeros(task.ACTION_DIM, dtype=np.float32)
        self._renderer: mujoco.Renderer | None = None

        self.action_space = spaces.Box(-1.0, 1.0, shape=(task.ACTION_DIM,), dtype=np.float32)
        # Claw joints cannot pass +-pi (the model's hard limits are tighter); cos, sin and
        # actions lie in [-1, 1]; the error is wrapped to [-pi, pi].
        high = np.ones(task.OBS_DIM, dtype=np.float32)
        high[task.OBS_CLAW_QPOS] = np.pi
        high[task.OBS_TARGET_ERROR] = np.pi
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    # -- state ------------------------------------------------------------------------------
    @property
    def claw_qpos(self) -> np.ndarray:
        return self.data.qpos[self._claw]

    @property
    def claw_qvel(self) -> np.ndarray:
        return self.data.qvel[self._claw]

    @property
    def valve_angle(self) -> float:
        return float(self.data.qpos[self._valve_qpos])

    def set_state(self, claw_qpos: np.ndarray, valve_angle: float, claw_qvel=None, valve_vel=0.0):
        """Places the claw and valve (positions clipped to the joint ranges, as ROBEL does)."""
        self.data.qpos[self._claw] = np.clip(claw_qpos, task.JOINT_LOW, task.JOINT_HIGH)
        self.data.qvel[self._claw] = 0.0 if claw_qvel is None else claw_qvel
        self.data.qpos[self._valve_qpos] = valve_angle
        self.data.qvel[self._valve_dof] = valve_vel
        mujoco.mj_forward(self.model, self.data)

    def _observation(self, err: float) -> np.ndarray:
        qpos, valve = self.claw_qpos, self.valve_angle
        return task.observation(qpos, valve, self._last_action, err, dtype=np.float32)

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.set_state(task.RESET_POSE, task.INITIAL_VALVE_ANGLE)
        self._last_action = np.zeros(task.ACTION_DIM, dtype=np.float32)
        err = float(task.target_error(self.valve_angle, self._goal))
        return self._observation(err), {"success": bool(task.success(err)), "target_error": err}

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (task.ACTION_DIM,):
            raise ValueError(f"action must have shape ({task.ACTION_DIM},), got {action.shape}")
        action = np.minimum(np.maximum(action, -1.0), 1.0)  # ROBEL keeps the clipped action
        targets = task.bound_joint_targets(task.action_to_joint_targets(action), self.claw_qpos)
        self.data.ctrl[self._claw] = targets
        mujoco.mj_step(self.model, self.data, nstep=task.FRAME_SKIP)
        self._last_action = action

        err = float(task.target_error(self.valve_angle, self._goal))
        terms = task.reward_terms(self.claw_qpos, self.claw_qvel, err)
        reward = float(sum(terms.values()))
        info = {"success": bool(task.success(err)), "target_error": err, **terms}
        return self._observation(err), reward, False, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = _make_renderer(self.model, *self._size)
        self._renderer.update_scene(self.data, camera=DEFAULT_CAMERA)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def _make_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as exc:  # the bindings raise several types depending on the GL backend
        raise RenderUnavailableError(
            "no offscreen OpenGL context for MuJoCo rendering "
            f"({type(exc).__name__}: {exc}). Install an offscreen GL library "
            "(Debian: `apt-get install libegl1` or `libosmesa6`) and set MUJOCO_GL=egl or "
            "MUJOCO_GL=osmesa, or run without --render."
        ) from exc
