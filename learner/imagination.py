"""Imagined rollouts through the dynamics model: the one place used by model-based policy
training (full-trajectory and Dreamer-style, Sec. 3.2) and by the EPS gate (A.2.4)."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from learner.dynamics import DropoutMasks, DynamicsModel, ModelState


class Policy(Protocol):
    def sample(
        self, obs: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class Imagined(NamedTuple):
    """A batch of imagined trajectories. `returns` is the undiscounted sum of rewards (the
    paper's J with gamma = 1); the per-step tensors are kept only when asked for."""

    returns: torch.Tensor  # (B,)
    rewards: torch.Tensor | None = None  # (B, H)
    obs: torch.Tensor | None = None  # (B, H + 1, obs_dim)
    log_probs: torch.Tensor | None = None  # (B, H)


def imagine(
    model: DynamicsModel,
    policy: Policy,
    init_obs: torch.Tensor,
    masks: DropoutMasks | None,
    horizon: int,
    *,
    state: ModelState | None = None,
    deterministic_policy: bool = False,
    record: bool = False,
) -> Imagined:
    """Rolls `policy` through `model` for `horizon` steps from `init_obs` (B, obs_dim).

    Row b uses mask record b for every step (a mask is one sample w ~ q(w; theta), held fixed
    over the trajectory). Start from `state` to continue a filtered recurrent state (Dreamer).
    Actions are reparameterised and model samples are too, so under autograd the returns carry
    gradients to the policy; wrap the call in `torch.inference_mode()` when they are not needed.
    """
    if state is None:
        state = model.reset(init_obs.shape[0], masks)
    obs = init_obs
    total = torch.zeros(init_obs.shape[0], device=init_obs.device)
    rewards, observations, log_probs = [], [obs], []
    for _ in range(horizon):
        action, log_prob = policy.sample(obs, deterministic=deterministic_policy)
        obs, reward, state = model.sample(state, obs, action)
        total = total + reward
        if record:
            rewards.append(reward)
            observations.append(obs)
            log_probs.append(log_prob)
    if not record:
        return Imagined(total)
    return Imagined(
        total, torch.stack(rewards, 1), torch.stack(observations, 1), torch.stack(log_probs, 1)
    )
