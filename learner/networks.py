"""Policy and critic networks (Appendix A.2.2, A.2.3; Sec. 3.2 for the layer-normalised Q)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def mlp(
    in_dim: int,
    hidden: tuple[int, ...],
    out_dim: int | None,
    activation: type[nn.Module],
    layer_norm: bool = False,
) -> nn.Sequential:
    """Linear layers with `activation` between them (LayerNorm before it when asked);
    no output layer when `out_dim` is None."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(in_dim, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(activation())
        in_dim = width
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def tanh_log_det_jacobian(pre_tanh: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2), written stably as 2 (log 2 - u - softplus(-2u))."""
    return 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))


class TanhGaussianPolicy(nn.Module):
    """Tanh-Gaussian MLP policy (A.2.2): tanh between layers, a mean head with no activation and
    a std head with softplus (or sigmoid * sigma_max when sigma_max is set); samples pass
    through tanh, then are mapped to the action range by `action_scale` and `action_offset`."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...],
        sigma_max: float | None = None,
        min_std: float = 1e-4,
        action_scale: float | np.ndarray = 1.0,
        action_offset: float | np.ndarray = 0.0,
    ):
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(hidden)
        self.sigma_max, self.min_std = sigma_max, min_std
        self.trunk = mlp(obs_dim, self.hidden, None, nn.Tanh)
        self.mean_head = nn.Linear(self.hidden[-1], act_dim)
        self.std_head = nn.Linear(self.hidden[-1], act_dim)
        # Fixed observation normalisation (identity unless set); exported with the weights.
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("action_scale", _vector(action_scale, act_dim))
        self.register_buffer("action_offset", _vector(action_offset, act_dim))

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the Gaussian before the tanh."""
        features = self.trunk((obs - self.obs_mean) / self.obs_std)
        return self.mean_head(features), _std(self.std_head(features), self.sigma_max,
                                              self.min_std)

    def sample(
        self, obs: torch.Tensor, deterministic: bool = False, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action and its log-density (with the tanh correction).

        `noise` (standard normal, shaped like the action) replaces the internal draw, so the
        same sample can be reproduced elsewhere (the numpy runner's parity test).
        """
        mean, std = self.distribution(obs)
        return _squashed_sample(mean, std, deterministic, noise, self.action_scale,
                                self.action_offset)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action tanh(mean), mapped to the action range."""
        mean, _ = self.distribution(obs)
        return self.action_offset + self.action_scale * torch.tanh(mean)

    @torch.no_grad()
    def folded(self, dtype: torch.dtype = torch.float32) -> SigmoidFoldedPolicy:
        """This policy, rewritten for fast batched sampling without gradients (the EPS gate)."""
        return SigmoidFoldedPolicy(self, dtype)

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        """One action for one observation (or a batch), in numpy."""
        param = self.mean_head.weight
        obs_t = torch.as_tensor(np.asarray(obs), dtype=param.dtype, device=param.device)
        action, _ = self.sample(obs_t, deterministic=deterministic)
        return action.cpu().numpy()

    # -- export -----------------------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        return {
            "type": "tanh_gaussian_mlp",
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden": list(self.hidden),
            "activation": "tanh",
            "std": "softplus" if self.sigma_max is None else "sigmoid",
            "sigma_max": self.sigma_max,
            "min_std": self.min_std,
        }

    def _named_tensors(self) -> dict[str, torch.Tensor]:
        linears = [m for m in self.trunk if isinstance(m, nn.Linear)]
        tensors = {
            f"hidden.{i}.{name}": getattr(layer, name)
            for i, layer in enumerate(linears)
            for name in ("weight", "bias")
        }
        tensors.update({
            "mean.weight": self.mean_head.weight,
            "mean.bias": self.mean_head.bias,
            "std.weight": self.std_head.weight,
            "std.bias": self.std_head.bias,
            "obs_mean": self.obs_mean,
            "obs_std": self.obs_std,
            "action_scale": self.action_scale,
            "action_offset": self.action_offset,
        })
        return tensors

    def get_weights(self) -> dict[str, np.ndarray]:
        """All arrays the numpy runner needs, float32, keyed by role (see learner/export.py)."""
        return {
            key: tensor.detach().cpu().numpy().astype(np.float32)
            for key, tensor in self._named_tensors().items()
        }

    @torch.no_grad()
    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Inverse of `get_weights`."""
        for key, tensor in self._named_tensors().items():
            tensor.copy_(torch.as_tensor(weights[key]))


class SigmoidFoldedPolicy:
    """The same function as a `TanhGaussianPolicy`, for sampling many rows without gradients:
    every hidden tanh becomes a sigmoid, with the affine parts of tanh(z) = 2 sigmoid(2z) - 1
    folded into the weights around it (and the observation normalisation into the first layer),
    the two heads as one product, the weights cast once to `dtype`.

    Written by hand because this torch's CPU tanh is 5-15x slower than its sigmoid (a 500x1024
    tensor: docs/BENCHMARKS.md, gate latency), and the gate runs 2 x 40 steps of 500 rows of the
    1024-wide MB policy per decision. A snapshot: it does not follow later updates."""

    def __init__(self, policy: TanhGaussianPolicy, dtype: torch.dtype):
        linears = [m for m in policy.trunk if isinstance(m, nn.Linear)]
        scale = 1.0 / policy.obs_std.double()
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, layer in enumerate(linears):
            w, b = layer.weight.double(), layer.bias.double()
            if i == 0:  # W (obs - mean) / std + b, then the 2 of sigmoid(2z)
                w_in = w * scale
                w, b = 2.0 * w_in, 2.0 * (b - w_in @ policy.obs_mean.double())
            else:  # W (2u - 1) + b, then the 2 of sigmoid(2z)
                w, b = 4.0 * w, 2.0 * (b - w.sum(1))
            self.layers.append((w.to(dtype), b.to(dtype)))
        head_w = torch.cat([policy.mean_head.weight, policy.std_head.weight]).double()
        head_b = torch.cat([policy.mean_head.bias, policy.std_head.bias]).double()
        head_w, head_b = 2.0 * head_w, head_b - head_w.sum(1)  # they read tanh features 2u - 1
        self.head = (head_w.to(dtype), head_b.to(dtype))
        self.dtype, self.act_dim = dtype, policy.act_dim
        self.sigma_max, self.min_std = policy.sigma_max, policy.min_std
        self.action_scale, self.action_offset = policy.action_scale, policy.action_offset

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs.to(self.dtype)
        for w, b in self.layers:
            x = F.linear(x, w, b).sigmoid_()  # in place: no second 500x1024 tensor per layer
        out = F.linear(x, *self.head).float()
        mean, raw_std = out[..., :self.act_dim], out[..., self.act_dim:]
        return mean, _std(raw_std, self.sigma_max, self.min_std)

    def sample(self, obs: torch.Tensor, deterministic: bool = False,
               noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """As `TanhGaussianPolicy.sample`."""
        mean, std = self.distribution(obs)
        return _squashed_sample(mean, std, deterministic, noise, self.action_scale,
                                self.action_offset)


def _std(raw_std: torch.Tensor, sigma_max: float | None, min_std: float) -> torch.Tensor:
    """The std head's activation: softplus, or A.2.5's sigma_max * sigmoid; then the floor."""
    if sigma_max is None:
        return F.softplus(raw_std) + min_std
    return sigma_max * torch.sigmoid(raw_std) + min_std


def _squashed_sample(mean: torch.Tensor, std: torch.Tensor, deterministic: bool,
                     noise: torch.Tensor | None, scale: torch.Tensor,
                     offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tanh(mean + std * noise) mapped to the action range, and its log-density."""
    if deterministic:
        noise = torch.zeros_like(mean)
    elif noise is None:
        noise = torch.randn_like(mean)
    pre_tanh = mean + std * noise
    log_prob = (-0.5 * noise.pow(2) - std.log() - LOG_SQRT_2PI).sum(-1)
    log_prob = log_prob - tanh_log_det_jacobian(pre_tanh).sum(-1) - scale.abs().log().sum()
    return offset + scale * torch.tanh(pre_tanh), log_prob


class QNetwork(nn.Module):
    """State-action value Q(s, a) (A.2.3), with LayerNorm after each hidden linear layer
    (Sec. 3.2, after Ball et al. 2023)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], layer_norm: bool):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, tuple(hidden), 1, nn.ReLU, layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


class ValueNetwork(nn.Module):
    """State value V(s) for Dreamer-style model-based policy training (A.2.3)."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, tuple(hidden), 1, nn.ReLU)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def _vector(value: float | np.ndarray, size: int) -> torch.Tensor:
    """A scalar or per-dimension value as a float32 vector of `size`."""
    return torch.from_numpy(np.broadcast_to(np.asarray(value, dtype=np.float32), (size,)).copy())
