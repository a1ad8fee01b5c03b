"""Cheap toy tasks and helpers for the learner tests (imported by the test modules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class PointMass:
    """A 2-D point pushed towards the origin: x' = x + gain * a, reward -||x'||^2.

    Linear dynamics, a smooth reward, short episodes: cheap enough to learn in seconds on a CPU.
    A uniformly random policy scores about -7 over 10 steps; heading straight for the origin
    scores about -1.5.
    """

    obs_dim: int = 2
    act_dim: int = 2
    steps: int = 10
    gain: float = 0.25

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, self.obs_dim).astype(np.float32)

    def step(self, obs: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, float]:
        next_obs = (obs + self.gain * np.clip(action, -1.0, 1.0)).astype(np.float32)
        return next_obs, -float(np.sum(next_obs**2))


def run_episode(
    env: PointMass, act: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(obs (T+1, obs_dim), actions (T, act_dim), rewards (T,)) of one episode."""
    obs = [env.reset(rng)]
    actions, rewards = [], []
    for _ in range(env.steps):
        action = np.asarray(act(obs[-1]), dtype=np.float32)
        next_obs, reward = env.step(obs[-1], action)
        obs.append(next_obs)
        actions.append(action)
        rewards.append(reward)
    return np.stack(obs), np.stack(actions), np.asarray(rewards, dtype=np.float32)


def mean_return(
    env: PointMass, act: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int = 123
) -> float:
    rng = np.random.default_rng(seed)
    return float(np.mean([run_episode(env, act, rng)[2].sum() for _ in range(episodes)]))


def random_actor(env: PointMass, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    return lambda obs: rng.uniform(-1.0, 1.0, env.act_dim)


def greedy_actor(obs: np.ndarray) -> np.ndarray:
    """The obvious good policy: full speed towards the origin."""
    return np.clip(-obs / 0.25, -1.0, 1.0)
