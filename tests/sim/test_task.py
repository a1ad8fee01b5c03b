"""The task definition against figures worked out by hand from ROBEL's definitions."""

import numpy as np
import pytest

from dclaw import task

PI = np.pi


def test_reward_of_a_hand_built_state():
    # Claw off the reset pose by 0.3 rad on one joint, three joints moving (two of them fast),
    # valve 0.2 rad from the goal. ROBEL get_reward_dict, term by term:
    #   -5 * 0.2 = -1.0 ; -||(0.3, 0, ...)|| = -0.3 ; -||(0.6, -0.7)|| (0.4 < 0.5 is not counted)
    #   = -sqrt(0.85) ; +10 (0.2 < 0.25) ; +0 (0.2 >= 0.1)
    qpos = task.RESET_POSE.copy()
    qpos[4] += 0.3
    qvel = np.zeros(9)
    qvel[[0, 1, 2]] = [0.6, 0.4, -0.7]
    terms = task.reward_terms(qpos, qvel, np.array(0.2))
    assert terms["target_dist_cost"] == pytest.approx(-1.0)
    assert terms["pose_diff_cost"] == pytest.approx(-0.3)
    assert terms["joint_vel_cost"] == pytest.approx(-np.sqrt(0.85))
    assert terms["bonus_small"] == 10.0
    assert terms["bonus_big"] == 0.0
    assert task.reward(qpos, qvel, np.array(0.2)) == pytest.approx(
        -1.0 - 0.3 - np.sqrt(0.85) + 10.0
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PI, -5 * PI),  # at the start: only the distance cost
        (-0.05, -0.25 + 10 + 50),  # within both bonus radii
        (0.1, -0.5 + 10),  # the big bonus needs |error| < 0.1, strictly
        (0.25, -1.25),  # the small bonus needs |error| < 0.25, strictly
    ],
)
def test_reward_at_reset_pose_depends_on_error_only(error, expected):
    r = task.reward(task.RESET_POSE, np.zeros(9), np.array(error))
    assert r == pytest.approx(expected)


def test_reward_is_batched():
    qpos = np.broadcast_to(task.RESET_POSE, (4, 3, 9))
    errs = np.full((4, 3), 0.05)
    out = task.reward(qpos, np.zeros((4, 3, 9)), errs)
    assert out.shape == (4, 3)
    assert np.allclose(out, -0.25 + 60)


def test_success_threshold():
    assert task.success(np.array([0.099, -0.099])).all()
    assert not task.success(np.array([0.1, -0.1, 1.0])).any()


def test_saturated_action_from_reset_pose_is_speed_bounded():
    # Action +1 asks for the top of each range: (0.48, pi/3, pi/2). From (0, -pi/3, pi/3) every
    # joint is further than 2pi/3 rad/s * 0.1 s = 0.20944 rad away, so each moves exactly that.
    targets = task.action_to_joint_targets(np.ones(9))
    assert np.allclose(targets, [0.48, PI / 3, PI / 2] * 3)
    bounded = task.bound_joint_targets(targets, task.RESET_POSE)
    step = 2 * PI / 3 * 0.1
    assert np.allclose(bounded, np.array([0.0, -PI / 3, PI / 3] * 3) + step)


def test_small_action_is_not_bounded_and_out_of_range_action_is_clipped():
    a = np.array([0.1, -2.0, 0.5] * 3)  # -2 clips to -1
    targets = task.action_to_joint_targets(a)
    assert np.allclose(targets, [0.048, -PI / 3, PI / 4] * 3)
    cur = np.array([0.0, -PI / 3, PI / 4 - 0.1] * 3)
    assert np.allclose(task.bound_joint_targets(targets, cur), targets)


def test_bound_clips_to_joint_range_before_the_speed_limit():
    cur = np.array([0.47, 0.0, 0.0] * 3)
    out = task.bound_joint_targets(np.array([5.0, 0.0, 0.0] * 3), cur)
    assert np.allclose(out[[0, 3, 6]], 0.48)


def test_target_error_matches_robel_float32_goal():
    # ROBEL stores the goal wrapped to [-pi, pi) as float32: float32(-pi) < -pi, so with the
    # valve at 0 the wrapped error is just under +pi (not -pi).
    err = task.target_error(0.0)
    assert 0 < err < PI
    assert err == pytest.approx(PI, abs=1e-6)
    # Halfway round, either direction.
    assert task.target_error(PI / 2) == pytest.approx(PI / 2, abs=1e-6)
    assert task.target_error(-PI / 2) == pytest.approx(-PI / 2, abs=1e-6)
    assert abs(task.target_error(PI - 0.05)) == pytest.approx(0.05, abs=1e-6)


def test_observation_layout():
    qpos = np.arange(9) / 10
    act = -np.arange(9) / 10
    obs = task.observation(qpos, PI / 2, act)
    assert obs.shape == (21,)
    assert np.allclose(obs[:9], qpos)
    assert obs[9] == pytest.approx(0.0, abs=1e-12)  # cos(pi/2)
    assert obs[10] == pytest.approx(1.0)  # sin(pi/2)
    assert np.allclose(obs[11:20], act)
    assert obs[20] == pytest.approx(PI / 2, abs=1e-6)


def _episode(rng: np.random.Generator, valve: np.ndarray):
    """An episode's observations and rewards for a given valve path, claw at the reset pose."""
    steps = len(valve) - 1
    qpos = np.tile(task.RESET_POSE, (steps + 1, 1))
    obs = task.observation(qpos, valve, rng.uniform(-1, 1, (steps + 1, task.ACTION_DIM)))
    still = np.zeros((steps, task.N_JOINTS))
    rewards = task.reward(qpos[1:], still, obs[1:, task.OBS_TARGET_ERROR])
    return obs, rewards


def test_turning_the_valve_a_third_is_the_episode_of_a_valve_started_a_third_on():
    rng = np.random.default_rng(0)
    path = np.linspace(0.0, 1.2, 9)  # a push of 1.2 rad from the start ...
    obs, rewards = _episode(rng, path)
    turned_obs, turned_rewards = task.turn_valve(obs, rewards, 1)
    # ... is, a third of a turn on, a push from 2.09 rad through the goal at pi.
    expected_obs, expected_rewards = _episode(np.random.default_rng(0), path + 2 * PI / 3)
    assert np.allclose(turned_obs, expected_obs, atol=1e-6)
    assert np.allclose(turned_rewards, expected_rewards, atol=1e-5)
    assert turned_rewards.max() > 50 > rewards.max()  # the success bonus, never earned at 0..1.2


def test_turning_back_and_three_thirds_give_the_episode_again():
    obs, rewards = _episode(np.random.default_rng(1), np.linspace(-0.5, 2.0, 11))
    back = task.turn_valve(*task.turn_valve(obs, rewards, 1), -1)
    full = task.turn_valve(*task.turn_valve(*task.turn_valve(obs, rewards, 1), 1), 1)
    for out_obs, out_rewards in (back, full):
        assert np.allclose(out_obs, obs, atol=1e-9)
        assert np.allclose(out_rewards, rewards, atol=1e-9)
    turned, _ = task.turn_valve(obs.astype(np.float32), rewards, -1)
    assert turned.dtype == np.float32
    same = [task.OBS_CLAW_QPOS, task.OBS_LAST_ACTION]  # the claw's part is untouched
    assert all(np.array_equal(turned[:, s], obs.astype(np.float32)[:, s]) for s in same)
