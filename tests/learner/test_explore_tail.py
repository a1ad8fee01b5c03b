"""Return-then-explore episodes of the offline trainer (AgentConfig.explore_tail)."""

from __future__ import annotations

import json

import gymnasium
import numpy as np
import pytest

from learner.agent import UnifiedAgent
from learner.config import make_config
from learner.offline import run_episode, train

OBS, ACT, T = 3, 2, 40


class Drift(gymnasium.Env):
    """obs' = obs + 0.1 a; "succeeds" on every episode whose reset seed is in `succeed_on`."""

    def __init__(self, succeed_on: set[int] = frozenset()):
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACT,), np.float32)
        self.succeed_on, self.seed = succeed_on, None

    def reset(self, *, seed=None, options=None):
        self.seed, self.t, self.obs = seed, 0, np.zeros(OBS, np.float32)
        return self.obs.copy(), {}

    def step(self, action):
        self.t += 1
        self.obs = self.obs + 0.1 * np.pad(action, (0, OBS - ACT)).astype(np.float32)
        success = self.seed in self.succeed_on
        return self.obs.copy(), -float(self.obs @ self.obs), False, self.t >= T, {
            "success": success}


def _config(**overrides):
    return make_config("cpu-small", algorithm="sac", obs_dim=OBS, act_dim=ACT, episode_steps=T,
                       warmup_episodes=1, sac__batch_size=8, sac__updates_per_episode=1,
                       **overrides)


def test_an_explore_episode_runs_the_mean_then_uniform_random_actions():
    agent = UnifiedAgent(_config())
    episode = run_episode(Drift(), agent, "mf", seed=0, explore_from=12,
                          explore_rng=np.random.default_rng(0))
    means = np.stack([agent.act(o, "mf", deterministic=True) for o in episode.obs[:-1]])
    np.testing.assert_allclose(episode.actions[:12], means[:12], atol=1e-6)
    tail = episode.actions[12:]
    assert np.all(np.abs(tail) <= 1.0)
    assert np.abs(tail - means[12:]).min() > 1e-4  # not the policy's actions
    assert tail.std() > 0.4  # uniform on [-1, 1]: std 0.58


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_explore_episodes_stop_at_the_given_number_of_successes(tmp_path, share):
    seed = 3  # run_episode's reset seed is seed * 100_000 + episode index
    env = Drift(succeed_on={seed * 100_000 + i for i in (4, 6)})
    config = _config(seed=seed, explore_tail=share, explore_tail_until=2)
    train(env, config, episodes=9, out=tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    explored = [row["episode"] for row in rows if "explore_from" in row]
    if share == 0.0:
        assert explored == []
    else:
        # Not in the warm-up (episode 0); every MF episode until the second success (6).
        assert explored == [1, 2, 3, 4, 5, 6]
        assert all(10 <= row["explore_from"] <= 30 for row in rows if "explore_from" in row)
