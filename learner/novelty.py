"""Random network distillation (Burda et al. 2019): a novelty bonus for SAC's rewards.

Not in the paper. A fixed, randomly initialised network maps a state to features; a second
network learns to predict them on the states SAC replays. Its error is large on states seen
rarely or never, and that error, divided by its running mean, is the bonus added to the reward.
Why: a cpu-small seed that never turns the valve past ~2 rad settles on a one-push policy
(docs/BENCHMARKS.md, "Why a seed stalls"); a bonus for unseen valve angles and finger poses
rewards the regrasp that the extrinsic reward never shows.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from learner.networks import mlp


class NoveltyBonus:
    """RND over a slice of the observation (`columns`: which entries describe the state)."""

    def __init__(
        self,
        obs_dim: int,
        columns: list[int] | None,
        hidden: tuple[int, ...] = (128, 128),
        features: int = 64,
        lr: float = 1e-4,
        ema: float = 0.01,
        device: str | torch.device = "cpu",
    ):
        self.columns = torch.tensor(columns if columns is not None else range(obs_dim))
        n = len(self.columns)
        self.target = mlp(n, hidden, features, nn.ReLU).to(device).requires_grad_(False)
        self.predictor = mlp(n, hidden, features, nn.ReLU).to(device)
        self.optim = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.obs_mean = torch.zeros(n, device=device)
        self.obs_std = torch.ones(n, device=device)
        self.mean_error = torch.ones((), device=device)
        self.ema = ema
        self._fitted = False

    def fit_normaliser(self, observations: torch.Tensor) -> None:
        """Observation mean and std from every stored state (called once per episode)."""
        x = observations[:, self.columns]
        self.obs_mean, self.obs_std = x.mean(0), x.std(0).clamp_min(1e-3)

    def _error(self, obs: torch.Tensor) -> torch.Tensor:
        x = ((obs[:, self.columns] - self.obs_mean) / self.obs_std).clamp(-5.0, 5.0)
        return (self.predictor(x) - self.target(x)).pow(2).mean(-1)

    def bonus(self, obs: torch.Tensor) -> torch.Tensor:
        """Prediction error of each state over the running mean error: ~1 on familiar states."""
        with torch.no_grad():
            return self._error(obs) / self.mean_error

    def update(self, obs: torch.Tensor) -> tuple[torch.Tensor, float]:
        """One predictor step on replayed states; returns their bonus (before the step, as
        `bonus` gives it) and the loss, and updates the running mean error."""
        error = self._error(obs)
        bonus = error.detach() / self.mean_error
        loss = error.mean()
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        with torch.no_grad():
            if not self._fitted:
                self.mean_error.copy_(loss.detach())
                self._fitted = True
            else:
                self.mean_error.lerp_(loss.detach(), self.ema)
        return bonus, float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.state_dict(),
            "predictor": self.predictor.state_dict(),
            "optim": self.optim.state_dict(),
            "obs_mean": self.obs_mean, "obs_std": self.obs_std,
            "mean_error": self.mean_error, "fitted": self._fitted,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        self.optim.load_state_dict(state["optim"])
        self.obs_mean, self.obs_std = state["obs_mean"], state["obs_std"]
        self.mean_error = state["mean_error"]
        self._fitted = bool(state["fitted"])


def with_bonus(rewards: torch.Tensor, bonus: torch.Tensor, scale: float) -> torch.Tensor:
    """Extrinsic reward plus `scale` times the novelty bonus (in reward units)."""
    return rewards + scale * F.relu(bonus)
