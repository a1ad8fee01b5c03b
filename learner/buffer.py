"""The shared episode buffer of Alg. 1: whole trajectories kept as tensors.

SAC samples transitions from it; the dynamics model samples whole trajectories; full-trajectory
policy training and the gate draw initial states from its empirical initial-state distribution.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch


class TransitionBatch(NamedTuple):
    """Transitions for SAC. `dones` is 1 only where the environment really terminated:
    the 40-step time limit is truncation, so the last step of an episode still bootstraps."""

    obs: torch.Tensor  # (B, obs_dim)
    actions: torch.Tensor  # (B, act_dim)
    rewards: torch.Tensor  # (B,)
    next_obs: torch.Tensor  # (B, obs_dim)
    dones: torch.Tensor  # (B,)


class TrajectoryBatch(NamedTuple):
    """Whole trajectories for the dynamics model: obs[:, t+1] follows (obs[:, t], actions[:, t])."""

    obs: torch.Tensor  # (B, T + 1, obs_dim)
    actions: torch.Tensor  # (B, T, act_dim)
    rewards: torch.Tensor  # (B, T)


class EpisodeBuffer:
    """Fixed-length episodes (T steps each) in preallocated tensors that grow by doubling."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        episode_steps: int,
        device: str | torch.device = "cpu",
        initial_capacity: int = 16,
    ):
        self.obs_dim, self.act_dim, self.episode_steps = obs_dim, act_dim, episode_steps
        self.device = torch.device(device)
        self._size = 0
        self._allocate(max(1, initial_capacity))

    # -- storage ---------------------------------------------------------------------------
    def _allocate(self, capacity: int) -> None:
        T, dev = self.episode_steps, self.device
        fresh = {
            "obs": torch.zeros(capacity, T + 1, self.obs_dim, device=dev),
            "actions": torch.zeros(capacity, T, self.act_dim, device=dev),
            "rewards": torch.zeros(capacity, T, device=dev),
            "terminated": torch.zeros(capacity, dtype=torch.bool, device=dev),
        }
        for name, tensor in fresh.items():
            old = getattr(self, f"_{name}", None)
            if old is not None:
                tensor[: self._size] = old[: self._size]
            setattr(self, f"_{name}", tensor)

    @property
    def capacity(self) -> int:
        return self._obs.shape[0]

    def __len__(self) -> int:
        return self._size

    @property
    def num_transitions(self) -> int:
        return self._size * self.episode_steps

    def add_episode(self, obs: Any, actions: Any, rewards: Any, terminated: bool = False) -> None:
        """Adds one episode: obs (T+1, obs_dim), actions (T, act_dim), rewards (T,).

        `terminated` says the environment ended the episode at its last step (not a time limit).
        """
        obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)
        act_t = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.device)
        rew_t = torch.as_tensor(np.asarray(rewards), dtype=torch.float32, device=self.device)
        T = self.episode_steps
        expected = {"obs": (T + 1, self.obs_dim), "actions": (T, self.act_dim), "rewards": (T,)}
        for name, tensor in (("obs", obs_t), ("actions", act_t), ("rewards", rew_t)):
            if tuple(tensor.shape) != expected[name]:
                raise ValueError(f"{name} must have shape {expected[name]}, got {tensor.shape}")
        if self._size == self.capacity:
            self._allocate(2 * self.capacity)  # geometric growth: amortised O(1) per episode
        i = self._size
        self._obs[i], self._actions[i], self._rewards[i] = obs_t, act_t, rew_t
        self._terminated[i] = bool(terminated)
        self._size += 1

    # -- sampling ----------------------------------------------------------------------------
    def _randint(self, high: int, size: int, generator: torch.Generator | None) -> torch.Tensor:
        if self._size == 0:
            raise RuntimeError("the buffer is empty")
        # Indices are drawn on the CPU so one CPU generator serves any storage device.
        return torch.randint(high, (size,), generator=generator).to(self.device)

    def sample_transitions(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> TransitionBatch:
        """Uniform transitions (with replacement) over all stored steps."""
        flat = self._randint(self.num_transitions, batch_size, generator)
        ep, t = flat // self.episode_steps, flat % self.episode_steps
        last = t == self.episode_steps - 1
        dones = (last & self._terminated[ep]).float()
        return TransitionBatch(
            obs=self._obs[ep, t],
            actions=self._actions[ep, t],
            rewards=self._rewards[ep, t],
            next_obs=self._obs[ep, t + 1],
            dones=dones,
        )

    def sample_trajectories(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> TrajectoryBatch:
        """Uniform whole trajectories (with replacement)."""
        ep = self._randint(self._size, batch_size, generator)
        return TrajectoryBatch(self._obs[ep], self._actions[ep], self._rewards[ep])

    def all_trajectories(self) -> TrajectoryBatch:
        """Every stored trajectory (views, not copies)."""
        n = self._size
        return TrajectoryBatch(self._obs[:n], self._actions[:n], self._rewards[:n])

    def all_observations(self) -> torch.Tensor:
        """Every stored observation, (N * (T + 1), obs_dim): Dreamer-style start states."""
        return self._obs[: self._size].reshape(-1, self.obs_dim)

    def initial_observations(self) -> torch.Tensor:
        """The empirical initial-state distribution: obs[:, 0] of every episode, (N, obs_dim)."""
        return self._obs[: self._size, 0]

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        n = self._size
        return {
            "obs": self._obs[:n].cpu(),
            "actions": self._actions[:n].cpu(),
            "rewards": self._rewards[:n].cpu(),
            "terminated": self._terminated[:n].cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["obs"].shape[0])
        self._size = 0
        self._allocate(max(16, 1 << max(0, n - 1).bit_length()))
        self._obs[:n] = state["obs"].to(self.device)
        self._actions[:n] = state["actions"].to(self.device)
        self._rewards[:n] = state["rewards"].to(self.device)
        self._terminated[:n] = state["terminated"].to(self.device)
        self._size = n
