"""The model-based policy and its two training methods (Sec. 3.2 "Model-Based RL").

Full-trajectory training (DClaw, Table 2): sample dropout masks, for each mask sample initial
states from the empirical initial-state distribution, roll the policy through the model for the
whole episode with reparameterised actions, and minimise -mean return + alpha_MB * log-prob,
clipping the gradient. Dreamer-style training (Hafner et al. 2019): start states sampled from
the buffer, H = 16 imagined steps, a state-value critic and lambda-returns.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from learner.buffer import EpisodeBuffer
from learner.config import MBPolicyConfig
from learner.dynamics import DynamicsModel, ModelState
from learner.imagination import imagine
from learner.networks import TanhGaussianPolicy, ValueNetwork
from learner.sac import temperature_loss


# -- losses ---------------------------------------------------------------------------------------
def full_trajectory_loss(
    returns: torch.Tensor, log_probs: torch.Tensor, alpha: float | torch.Tensor
) -> torch.Tensor:
    """-mean_b sum_t r_t + alpha * mean_b sum_t log pi(a_t|s_t): returns (B,), log_probs (B, T)."""
    return -returns.mean() + alpha * log_probs.sum(-1).mean()


def lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, discount: float, lam: float
) -> torch.Tensor:
    """TD(lambda) targets G_t = r_t + discount ((1 - lam) V(s_{t+1}) + lam G_{t+1}), G_H = V(s_H).

    rewards (B, H), values (B, H + 1) -> (B, H).
    """
    horizon = rewards.shape[1]
    out = []
    next_return = values[:, -1]
    for t in reversed(range(horizon)):
        next_return = rewards[:, t] + discount * (
            (1 - lam) * values[:, t + 1] + lam * next_return
        )
        out.append(next_return)
    return torch.stack(out[::-1], dim=1)


def dreamer_actor_loss(
    targets: torch.Tensor, log_probs: torch.Tensor, alpha: float | torch.Tensor
) -> torch.Tensor:
    """-mean lambda-return + alpha * mean log pi, both over batch and imagined steps."""
    return -targets.mean() + alpha * log_probs.mean()


def value_loss(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return 0.5 * F.mse_loss(values, targets.detach())


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Gradients flow through `module` to its inputs but not into its parameters."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in zip(module.parameters(), flags, strict=True):
            param.requires_grad_(flag)


@dataclass
class MBPolicyStats:
    loss: float
    imagined_return: float  # mean undiscounted return of the imagined trajectories
    entropy: float  # -mean log pi per step
    alpha: float
    grad_norm: float  # before clipping
    value_loss: float = 0.0  # Dreamer-style only

    def to_dict(self, prefix: str = "mb/") -> dict[str, float]:
        return {prefix + k: v for k, v in asdict(self).items()}


class MBPolicyLearner:
    """Owns the model-based policy, its optimiser and (Dreamer-style) its value critic."""

    def __init__(
        self, obs_dim: int, act_dim: int, config: MBPolicyConfig, gamma: float,
        device: str | torch.device = "cpu",
    ):
        self.config, self.gamma, self.device = config, gamma, torch.device(device)
        self.policy = TanhGaussianPolicy(
            obs_dim, act_dim, config.hidden, sigma_max=config.sigma_max
        ).to(self.device)
        self.optim = torch.optim.Adam(self.policy.parameters(), lr=config.lr)
        self.log_alpha = torch.tensor(
            math.log(config.alpha), device=self.device, requires_grad=config.auto_entropy
        )
        self.target_entropy = (
            float(-act_dim) if config.target_entropy is None else config.target_entropy
        )
        self.alpha_optim = (
            torch.optim.Adam([self.log_alpha], lr=config.alpha_lr) if config.auto_entropy else None
        )
        self.value: ValueNetwork | None = None
        self.value_optim: torch.optim.Optimizer | None = None
        if config.training == "dreamer":
            self.value = ValueNetwork(obs_dim, config.value_hidden).to(self.device)
            self.value_optim = torch.optim.Adam(self.value.parameters(), lr=config.value_lr)

    @property
    def alpha(self) -> float:
        return self.log_alpha.exp().item()

    def update(
        self,
        model: DynamicsModel,
        buffer: EpisodeBuffer,
        generator: torch.Generator | None = None,
    ) -> MBPolicyStats:
        """One gradient step of the policy on imagined trajectories from the current model."""
        with frozen(model):
            if self.config.training == "full_trajectory":
                return self._full_trajectory_step(model, buffer, generator)
            return self._dreamer_step(model, buffer, generator)

    def _step_policy(self, loss: torch.Tensor, log_probs: torch.Tensor) -> tuple[float, float]:
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.max_grad_norm)
        self.optim.step()
        alpha_loss = 0.0
        if self.alpha_optim is not None:
            loss_alpha = temperature_loss(self.log_alpha, log_probs, self.target_entropy)
            self.alpha_optim.zero_grad(set_to_none=True)
            loss_alpha.backward()
            self.alpha_optim.step()
            alpha_loss = loss_alpha.item()
        return float(grad_norm), alpha_loss

    def _full_trajectory_step(
        self, model: DynamicsModel, buffer: EpisodeBuffer, generator: torch.Generator | None
    ) -> MBPolicyStats:
        cfg = self.config
        if cfg.horizon is None:
            raise ValueError("MBPolicyConfig.horizon is unset (the agent sets it to T)")
        n = cfg.num_masks * cfg.rollouts_per_mask
        masks = model.sample_masks(cfg.num_masks, generator).repeat_interleave(
            cfg.rollouts_per_mask
        )
        initial = buffer.initial_observations()
        rows = torch.randint(initial.shape[0], (n,), generator=generator).to(initial.device)
        rollout = imagine(model, self.policy, initial[rows], masks, cfg.horizon, record=True)
        alpha = self.log_alpha.exp().detach()
        loss = full_trajectory_loss(rollout.returns, rollout.log_probs, alpha)
        grad_norm, _ = self._step_policy(loss, rollout.log_probs)
        return self._stats(loss, rollout, grad_norm)

    def _dreamer_step(
        self, model: DynamicsModel, buffer: EpisodeBuffer, generator: torch.Generator | None
    ) -> MBPolicyStats:
        cfg = self.config
        assert self.value is not None and self.value_optim is not None
        start_obs, start_state = self._start_states(model, buffer, generator)
        rollout = imagine(
            model, self.policy, start_obs, None, cfg.dreamer_horizon, state=start_state,
            record=True,
        )
        values = self.value(rollout.obs)
        targets = lambda_returns(rollout.rewards, values, self.gamma, cfg.dreamer_lambda)
        alpha = self.log_alpha.exp().detach()
        loss = dreamer_actor_loss(targets, rollout.log_probs, alpha)
        grad_norm, _ = self._step_policy(loss, rollout.log_probs)

        loss_v = value_loss(self.value(rollout.obs[:, :-1].detach()), targets)
        self.value_optim.zero_grad(set_to_none=True)
        loss_v.backward()
        self.value_optim.step()
        return self._stats(loss, rollout, grad_norm, value_loss=loss_v.item())

    def _stats(self, loss: torch.Tensor, rollout, grad_norm: float,
               value_loss: float = 0.0) -> MBPolicyStats:
        return MBPolicyStats(
            loss=loss.item(),
            imagined_return=rollout.returns.mean().item(),
            entropy=-rollout.log_probs.mean().item(),
            alpha=self.alpha,
            grad_norm=grad_norm,
            value_loss=value_loss,
        )

    @torch.no_grad()
    def _start_states(
        self, model: DynamicsModel, buffer: EpisodeBuffer, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, ModelState]:
        """Start states sampled uniformly from the buffer, with the recurrent state obtained by
        filtering the recorded trajectory up to that step under the trajectory's own mask."""
        cfg = self.config
        n = cfg.num_masks * cfg.rollouts_per_mask
        batch = buffer.sample_trajectories(n, generator)
        masks = model.sample_masks(cfg.num_masks, generator).repeat_interleave(
            cfg.rollouts_per_mask
        )
        _, states = model.replay(batch, masks)
        steps = torch.randint(batch.obs.shape[1], (n,), generator=generator).to(batch.obs.device)
        rows = torch.arange(n, device=batch.obs.device)
        h, c = states.h[rows, steps], states.c[rows, steps]
        return batch.obs[rows, steps], ModelState(h, c, masks)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "policy": self.policy.state_dict(),
            "optim": self.optim.state_dict(),
            "log_alpha": self.log_alpha.detach().cpu(),
        }
        if self.alpha_optim is not None:
            state["alpha_optim"] = self.alpha_optim.state_dict()
        if self.value is not None and self.value_optim is not None:
            state["value"] = self.value.state_dict()
            state["value_optim"] = self.value_optim.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optim.load_state_dict(state["optim"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_optim is not None:
            self.alpha_optim.load_state_dict(state["alpha_optim"])
        if self.value is not None and self.value_optim is not None:
            self.value.load_state_dict(state["value"])
            self.value_optim.load_state_dict(state["value_optim"])
