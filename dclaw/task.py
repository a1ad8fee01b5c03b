"""The D'Claw TurnFixed task in plain numpy: one definition for the sim, the hardware and the tests.

Follows ROBEL's `DClawTurnFixed-v0` (robel 0.1.2: `dclaw/turn.py`, `dclaw/base_env.py`,
`components/robot/robot.py`, `robot_env.py`). Every function is batched over leading dimensions
so the same code scores one real step, a batch of replayed transitions or imagined rollouts.
"""

from __future__ import annotations

import numpy as np

N_JOINTS = 9
ACTION_DIM = N_JOINTS
OBS_DIM = 21  # claw qpos (9), cos/sin valve (2), last action (9), target error (1)

PHYSICS_TIMESTEP = 0.0025  # seconds, from the ROBEL model's <option timestep>
FRAME_SKIP = 40
CONTROL_PERIOD = PHYSICS_TIMESTEP * FRAME_SKIP  # 0.1 s: 10 Hz
EPISODE_STEPS = 40  # T of the paper's Table 2 and ROBEL's default time limit

# Joint ranges per finger (top, middle, bottom servo), ROBEL base_env.py `qpos_range`.
JOINT_LOW = np.array([-0.48, -np.pi / 3, -np.pi / 2] * 3)
JOINT_HIGH = np.array([0.48, np.pi / 3, np.pi / 2] * 3)
# Position control de-normalises over the joint range
# (ROBEL group_config.py: actuator_range = qpos_range).
ACTION_CENTER = (JOINT_LOW + JOINT_HIGH) / 2
ACTION_HALF_RANGE = (JOINT_HIGH - JOINT_LOW) / 2
MAX_JOINT_SPEED = 2 * np.pi / 3  # rad/s, ROBEL `qvel_range`

RESET_POSE = np.array([0.0, -np.pi / 3, np.pi / 3] * 3)
INITIAL_VALVE_ANGLE = 0.0
TARGET_VALVE_ANGLE = np.pi
SUCCESS_THRESHOLD = 0.1  # rad
BONUS_SMALL_THRESHOLD = 0.25  # rad
HIGH_VELOCITY = 0.5  # rad/s; joint speeds at or above this are penalised

# Observation layout: slices into the 21-vector.
OBS_CLAW_QPOS = slice(0, 9)
OBS_VALVE_COS = 9
OBS_VALVE_SIN = 10
OBS_LAST_ACTION = slice(11, 20)
OBS_TARGET_ERROR = 20


def _clip(x: np.ndarray, low, high) -> np.ndarray:
    # np.minimum/np.maximum: same result as np.clip at a third of its call overhead, which
    # matters at 40 calls per simulated second of a 10 Hz loop.
    return np.minimum(np.maximum(x, low), high)


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Wraps angles to [-pi, pi), as ROBEL does with `np.mod(x + pi, 2 pi) - pi`."""
    return np.mod(np.asarray(angle) + np.pi, 2 * np.pi) - np.pi


def stored_target(target_angle: float = TARGET_VALVE_ANGLE) -> np.float32:
    """The goal as ROBEL stores it: wrapped to [-pi, pi), then cast to float32.

    The cast matters: float32(-pi) lies just below -pi, so with the valve at 0 ROBEL's observed
    error is +3.1415926, not -pi. Keeping the cast keeps our observations equal to ROBEL's.
    """
    return np.float32(wrap_angle(target_angle))


def target_error(valve_angle: np.ndarray | float, target: float | None = None) -> np.ndarray:
    """Signed angle from the valve to the goal, wrapped to [-pi, pi)."""
    goal = stored_target() if target is None else target
    return wrap_angle(goal - np.asarray(valve_angle, dtype=np.float64))


def action_to_joint_targets(action: np.ndarray) -> np.ndarray:
    """Maps normalised actions in [-1, 1] to joint targets, clipped to the joint ranges."""
    action = _clip(action, -1.0, 1.0)
    return _clip(ACTION_CENTER + action * ACTION_HALF_RANGE, JOINT_LOW, JOINT_HIGH)


def bound_joint_targets(
    targets: np.ndarray, current_qpos: np.ndarray, dt: float = CONTROL_PERIOD
) -> np.ndarray:
    """Clips targets to the joint ranges, then limits each to MAX_JOINT_SPEED * dt from now.

    Matches ROBEL's `_apply_action_bounds` for position control: the same safety bound is
    enforced by the hardware backend before anything is written to the servos.
    """
    targets = _clip(targets, JOINT_LOW, JOINT_HIGH)
    max_step = MAX_JOINT_SPEED * dt
    return current_qpos + _clip(targets - current_qpos, -max_step, max_step)


def observation(
    claw_qpos: np.ndarray,
    valve_angle: np.ndarray | float,
    last_action: np.ndarray,
    target_err: np.ndarray | float | None = None,
    dtype: type = np.float64,
) -> np.ndarray:
    """Assembles the 21-value observation in ROBEL's key order.

    `target_err` may be passed when the caller has it already (it is `target_error(valve)`).
    """
    claw_qpos = np.asarray(claw_qpos)
    valve = np.asarray(valve_angle, dtype=np.float64)
    obs = np.empty((*claw_qpos.shape[:-1], OBS_DIM), dtype=dtype)
    obs[..., OBS_CLAW_QPOS] = claw_qpos
    obs[..., OBS_VALVE_COS] = np.cos(valve)
    obs[..., OBS_VALVE_SIN] = np.sin(valve)
    obs[..., OBS_LAST_ACTION] = last_action
    obs[..., OBS_TARGET_ERROR] = target_error(valve) if target_err is None else target_err
    return obs


def reward_terms(
    claw_qpos: np.ndarray, claw_qvel: np.ndarray, target_err: np.ndarray
) -> dict[str, np.ndarray]:
    """ROBEL's `get_reward_dict` for the turn tasks, batched over leading dimensions."""
    pose_diff = claw_qpos - RESET_POSE
    fast_sq = claw_qvel * claw_qvel
    fast_sq *= fast_sq >= HIGH_VELOCITY**2  # only joints at or above the speed threshold count
    goal = _goal_terms(target_err)
    return {
        "target_dist_cost": goal["target_dist_cost"],
        "pose_diff_cost": -np.sqrt(np.sum(pose_diff * pose_diff, axis=-1)),
        "joint_vel_cost": -np.sqrt(np.sum(fast_sq, axis=-1)),
        "bonus_small": goal["bonus_small"],
        "bonus_big": goal["bonus_big"],
    }


def _goal_terms(target_err: np.ndarray) -> dict[str, np.ndarray]:
    """The reward terms that depend on the valve's angle (through the target error) only."""
    dist = np.abs(target_err)
    return {
        "target_dist_cost": -5.0 * dist,
        "bonus_small": 10.0 * (dist < BONUS_SMALL_THRESHOLD),
        "bonus_big": 50.0 * (dist < SUCCESS_THRESHOLD),
    }


def reward(claw_qpos: np.ndarray, claw_qvel: np.ndarray, target_err: np.ndarray) -> np.ndarray:
    """Total reward: the sum of `reward_terms`."""
    return sum(reward_terms(claw_qpos, claw_qvel, target_err).values())


def success(target_err: np.ndarray) -> np.ndarray:
    """ROBEL's success score: the valve within SUCCESS_THRESHOLD of the goal."""
    return np.abs(target_err) < SUCCESS_THRESHOLD


# The valve (ROBEL `valve3.xml`) has three identical spokes 120 degrees apart, and nothing that
# touches the fingers turns with it but the spokes and its round hub: the physics at valve angle
# a and at a + 2 pi / 3 are the same up to the model's rounding (its spokes sit within ~1 mm of
# exact thirds; 40 steps of random pushes from both starts end within 0.035 rad).
VALVE_SYMMETRY = 3


def turn_valve(
    observations: np.ndarray, rewards: np.ndarray, turns: int
) -> tuple[np.ndarray, np.ndarray]:
    """One episode seen with the valve turned by `turns` thirds of a revolution.

    observations (..., T + 1, OBS_DIM) and rewards (..., T): the same claw motion on a valve
    started `turns * 2 pi / 3` further on, which the valve's symmetry makes an episode the sim
    could have produced. Only the valve's cos/sin, the target error and the reward terms that
    depend on it change; reward t is scored on observation t + 1, as the env scores it.
    """
    shift = turns * 2 * np.pi / VALVE_SYMMETRY
    obs = np.array(observations, dtype=np.float64)
    cos, sin = obs[..., OBS_VALVE_COS].copy(), obs[..., OBS_VALVE_SIN].copy()
    obs[..., OBS_VALVE_COS] = cos * np.cos(shift) - sin * np.sin(shift)
    obs[..., OBS_VALVE_SIN] = sin * np.cos(shift) + cos * np.sin(shift)
    err = obs[..., OBS_TARGET_ERROR].copy()
    new_err = wrap_angle(err - shift)
    obs[..., OBS_TARGET_ERROR] = new_err
    old_goal, new_goal = _goal_terms(err[..., 1:]), _goal_terms(new_err[..., 1:])
    delta = sum(new_goal.values()) - sum(old_goal.values())
    return obs.astype(np.asarray(observations).dtype), np.asarray(rewards) + delta


def episode_succeeded(observations: np.ndarray) -> bool:
    """An episode's success: ROBEL's score at its last observation, (T + 1, OBS_DIM)."""
    return bool(success(observations[-1, OBS_TARGET_ERROR]))
