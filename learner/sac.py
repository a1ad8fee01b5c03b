"""Soft Actor-Critic, the model-free learner of Unified RL (Sec. 3.2 "Model-Free RL").

Two changes from Haarnoja et al. (2018), after Ball et al. (2023): layer-normalised Q networks
(in `networks.QNetwork`) and no entropy term in the Q target. The losses are small pure
functions; `SAC` owns the networks and optimisers and calls them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from learner.buffer import TransitionBatch
from learner.config import SACConfig
from learner.networks import QNetwork, TanhGaussianPolicy


# -- losses (tensor in, tensor out) ------------------------------------------------------------
def q_target(
    rewards: torch.Tensor,
    dones: torch.Tensor,
    next_q_min: torch.Tensor,
    gamma: float,
    next_log_prob: torch.Tensor | None = None,
    alpha: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """r + gamma (1 - done) min Q'(s', a'); the soft term -alpha log pi(a'|s') is added only when
    `next_log_prob` is given (standard SAC). Unified RL passes none (Sec. 3.2)."""
    next_value = next_q_min
    if next_log_prob is not None:
        next_value = next_value - alpha * next_log_prob
    return rewards + gamma * (1.0 - dones) * next_value


def critic_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared TD error of both Q networks against one (detached) target."""
    target = target.detach()
    return F.mse_loss(q1, target) + F.mse_loss(q2, target)


def actor_loss(q_min: torch.Tensor, log_prob: torch.Tensor, alpha: float | torch.Tensor):
    """E[alpha log pi(a|s) - min Q(s, a)] with a ~ pi reparameterised."""
    return (alpha * log_prob - q_min).mean()


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """Automatic entropy tuning: drives the policy entropy towards `target_entropy`."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


@torch.no_grad()
def polyak_update(
    params: Iterable[torch.Tensor], target_params: Iterable[torch.Tensor], tau: float
) -> None:
    """target <- (1 - tau) target + tau param (SB3 `polyak_update`)."""
    # One foreach call over all tensors: target + tau (param - target).
    torch._foreach_lerp_(list(target_params), list(params), tau)


# -- the learner ---------------------------------------------------------------------------------
@dataclass
class SACStats:
    critic_loss: float
    actor_loss: float
    alpha: float
    alpha_loss: float
    q_mean: float
    entropy: float  # -mean log pi(a|s) of the fresh actions

    def to_dict(self, prefix: str = "sac/") -> dict[str, float]:
        return {prefix + k: v for k, v in asdict(self).items()}


class SAC:
    """Twin Q networks with polyak-averaged targets, a Tanh-Gaussian actor and a temperature
    that is fixed (DClaw, Table 2) or tuned automatically (`SACConfig.auto_entropy`)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: SACConfig,
        gamma: float,
        device: str | torch.device = "cpu",
    ):
        self.config, self.gamma = config, gamma
        self.device = torch.device(device)
        self.actor = TanhGaussianPolicy(
            obs_dim, act_dim, config.actor_hidden, sigma_max=config.sigma_max
        ).to(self.device)
        self.q1, self.q2 = (
            QNetwork(obs_dim, act_dim, config.critic_hidden, config.critic_layer_norm).to(
                self.device
            )
            for _ in range(2)
        )
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        for net in (self.q1_target, self.q2_target):
            net.requires_grad_(False)
        # Fused Adam: one kernel per step instead of a dozen ops per parameter tensor.
        self.actor_params = list(self.actor.parameters())
        self.actor_optim = torch.optim.Adam(self.actor_params, lr=config.actor_lr, fused=True)
        critic_params = [*self.q1.parameters(), *self.q2.parameters()]
        self.critic_optim = torch.optim.Adam(critic_params, lr=config.critic_lr, fused=True)
        self.log_alpha = torch.tensor(
            math.log(config.alpha), device=self.device,
            requires_grad=config.auto_entropy,
        )
        self.target_entropy = (
            float(-act_dim) if config.target_entropy is None else config.target_entropy
        )
        self.alpha_optim = (
            torch.optim.Adam([self.log_alpha], lr=config.alpha_lr) if config.auto_entropy else None
        )

    @property
    def alpha(self) -> float:
        return self.log_alpha.exp().item()

    @torch.no_grad()
    def compute_q_target(self, batch: TransitionBatch) -> torch.Tensor:
        next_action, next_log_prob = self.actor.sample(batch.next_obs)
        next_q = torch.min(
            self.q1_target(batch.next_obs, next_action), self.q2_target(batch.next_obs, next_action)
        )
        soft = next_log_prob if self.config.entropy_in_q_target else None
        scale = self.config.reward_scale  # rewards and alpha together (SACConfig.reward_scale)
        return q_target(scale * batch.rewards, batch.dones, next_q, self.gamma, soft,
                        scale * self.alpha)

    def update(self, batch: TransitionBatch) -> SACStats:
        """One gradient step of the critics, the actor and (optionally) the temperature."""
        target = self.compute_q_target(batch)
        q1, q2 = self.q1(batch.obs, batch.actions), self.q2(batch.obs, batch.actions)
        loss_q = critic_loss(q1, q2, target)
        self.critic_optim.zero_grad(set_to_none=True)
        loss_q.backward()
        self.critic_optim.step()

        action, log_prob = self.actor.sample(batch.obs)
        q_min = torch.min(self.q1(batch.obs, action), self.q2(batch.obs, action))
        alpha = self.config.reward_scale * self.log_alpha.exp().detach()
        loss_pi = actor_loss(q_min, log_prob, alpha)
        # Gradients for the actor only: the backward pass goes through the critics to the
        # action but skips their weight gradients, which the actor step would discard.
        grads = torch.autograd.grad(loss_pi, self.actor_params)
        for param, grad in zip(self.actor_params, grads, strict=True):
            param.grad = grad
        self.actor_optim.step()

        loss_alpha = torch.zeros(())
        if self.alpha_optim is not None:
            loss_alpha = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            self.alpha_optim.zero_grad(set_to_none=True)
            loss_alpha.backward()
            self.alpha_optim.step()

        polyak_update(self.q1.parameters(), self.q1_target.parameters(), self.config.tau)
        polyak_update(self.q2.parameters(), self.q2_target.parameters(), self.config.tau)
        return SACStats(
            critic_loss=loss_q.item(),
            actor_loss=loss_pi.item(),
            alpha=self.alpha,
            alpha_loss=loss_alpha.item(),
            q_mean=q1.mean().item(),
            entropy=-log_prob.mean().item(),
        )

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            name: getattr(self, name).state_dict()
            for name in ("actor", "q1", "q2", "q1_target", "q2_target", "actor_optim",
                         "critic_optim")
        }
        state["log_alpha"] = self.log_alpha.detach().cpu()
        if self.alpha_optim is not None:
            state["alpha_optim"] = self.alpha_optim.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("actor", "q1", "q2", "q1_target", "q2_target", "actor_optim",
                     "critic_optim"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_optim is not None:
            self.alpha_optim.load_state_dict(state["alpha_optim"])
