"""The dropout LSTM dynamics model (Sec. 3.2 "Model-Based RL", Appendix A.2.1).

`DropoutLSTMNet` works in normalised units: linear input layer (ReLU) -> one LSTM cell ->
two linear ReLU layers -> four heads (state-delta mean and std, reward mean and std; softplus
stds). A Bernoulli mask multiplies the input of every layer but the input layer, including each
gate's input-to-gate and hidden-to-gate paths inside the LSTM cell (the untied variational RNN
dropout of Gal & Ghahramani 2016a). A mask record holds one mask per trajectory; it is sampled
once and held fixed over all time steps, in training and in rollouts: a mask is a sample w_i of
the approximate posterior q(w; theta).

`DynamicsModel` wraps the net with the normalisation of inputs (obs, action) and outputs
(state deltas, rewards) and exposes the model interface: `loss`, `sample_masks`, `reset`,
`sample` (one step), in the spirit of mbrl-lib's `models/model.py`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from learner.buffer import EpisodeBuffer, TrajectoryBatch
from learner.config import DynamicsConfig

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
N_GATES = 4  # input, forget, cell, output


class DropoutMasks(NamedTuple):
    """Bernoulli keep-masks scaled by 1 / (1 - p), one per trajectory (the batch dimension)."""

    lstm_x: torch.Tensor  # (4, B, input_size): before each gate's input-to-gate layer
    lstm_h: torch.Tensor  # (4, B, lstm_size): before each gate's hidden-to-gate layer
    fc1: torch.Tensor  # (B, lstm_size): before the first linear layer
    fc2: torch.Tensor  # (B, hidden_1): before the second linear layer
    head: torch.Tensor  # (B, hidden_2): before the output heads

    @property
    def batch_size(self) -> int:
        return self.fc1.shape[0]

    def repeat_interleave(self, repeats: int) -> DropoutMasks:
        """Each mask held by `repeats` consecutive trajectories (K masks -> K * M rows)."""
        return DropoutMasks(
            self.lstm_x.repeat_interleave(repeats, dim=1),
            self.lstm_h.repeat_interleave(repeats, dim=1),
            *(m.repeat_interleave(repeats, dim=0) for m in (self.fc1, self.fc2, self.head)),
        )

    def index(self, rows: torch.Tensor) -> DropoutMasks:
        return DropoutMasks(
            self.lstm_x[:, rows], self.lstm_h[:, rows], self.fc1[rows], self.fc2[rows],
            self.head[rows],
        )


class Prediction(NamedTuple):
    """Gaussian predictions in normalised units."""

    delta_mean: torch.Tensor
    delta_std: torch.Tensor
    reward_mean: torch.Tensor  # (B,)
    reward_std: torch.Tensor  # (B,)


class ModelState(NamedTuple):
    """Recurrent state of a batch of imagined or replayed trajectories, with their masks."""

    h: torch.Tensor
    c: torch.Tensor
    masks: DropoutMasks


class DropoutLSTMNet(nn.Module):
    """The network of A.2.1, in normalised units."""

    def __init__(self, in_dim: int, obs_dim: int, config: DynamicsConfig):
        super().__init__()
        self.config = config
        n_in, n_h = config.input_size, config.lstm_size
        h1, h2 = config.hidden_sizes
        self.input_layer = nn.Linear(in_dim, n_in)
        # Each gate's input-to-gate and hidden-to-gate weights, stacked so that one batched
        # matmul over the gates takes differently masked inputs per gate.
        self.lstm_weight = nn.Parameter(torch.empty(N_GATES, n_in + n_h, n_h))
        self.lstm_bias = nn.Parameter(torch.zeros(N_GATES, 1, n_h))
        bound = 1.0 / math.sqrt(n_h)
        nn.init.uniform_(self.lstm_weight, -bound, bound)
        with torch.no_grad():
            self.lstm_bias[1].fill_(1.0)  # forget-gate bias 1 (Jozefowicz et al. 2015)
        self.fc1 = nn.Linear(n_h, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.delta_mean = nn.Linear(h2, obs_dim)
        self.delta_std = nn.Linear(h2, obs_dim)
        self.reward_mean = nn.Linear(h2, 1)
        self.reward_std = nn.Linear(h2, 1)

    def sample_masks(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> DropoutMasks:
        """Draws one mask record per trajectory: w_i ~ q(w; theta)."""
        cfg, dev = self.config, self.lstm_weight.device
        keep = 1.0 - cfg.dropout
        h1, h2 = cfg.hidden_sizes
        shapes = [
            (N_GATES, batch_size, cfg.input_size),
            (N_GATES, batch_size, cfg.lstm_size),
            (batch_size, cfg.lstm_size),
            (batch_size, h1),
            (batch_size, h2),
        ]
        masks = []
        for shape in shapes:
            probs = torch.full(shape, keep)
            masks.append((torch.bernoulli(probs, generator=generator) / keep).to(dev))
        return DropoutMasks(*masks)

    def initial_state(self, masks: DropoutMasks) -> ModelState:
        zeros = torch.zeros(
            masks.batch_size, self.config.lstm_size, device=self.lstm_weight.device
        )
        return ModelState(zeros, zeros.clone(), masks)

    def step(self, x: torch.Tensor, state: ModelState) -> tuple[Prediction, ModelState]:
        """One time step for normalised inputs x = (obs, action), (B, in_dim)."""
        masks = state.masks
        z = F.relu(self.input_layer(x))
        gate_in = torch.cat(
            [z.unsqueeze(0) * masks.lstm_x, state.h.unsqueeze(0) * masks.lstm_h], dim=-1
        )
        gates = torch.baddbmm(self.lstm_bias, gate_in, self.lstm_weight)
        i, f, g, o = gates.unbind(0)
        c = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return self._readout(h, masks.fc1, masks.fc2, masks.head), ModelState(h, c, masks)

    def _readout(self, h: torch.Tensor, fc1_mask: torch.Tensor, fc2_mask: torch.Tensor,
                 head_mask: torch.Tensor) -> Prediction:
        """The layers after the cell: two masked linear ReLU layers and the four heads."""
        y = F.relu(self.fc1(h * fc1_mask))
        y = F.relu(self.fc2(y * fc2_mask))
        y = y * head_mask
        min_std = self.config.min_std
        return Prediction(
            delta_mean=self.delta_mean(y),
            delta_std=F.softplus(self.delta_std(y)) + min_std,
            reward_mean=self.reward_mean(y).squeeze(-1),
            reward_std=F.softplus(self.reward_std(y)).squeeze(-1) + min_std,
        )

    def sequence(
        self, x: torch.Tensor, masks: DropoutMasks
    ) -> tuple[Prediction, torch.Tensor, torch.Tensor]:
        """`step` over whole recorded sequences x (B, T, in_dim), teacher-forced: predictions
        shaped (B, T, ...) and the recurrent states h, c before every step and after the last,
        (B, T + 1, lstm_size). Same arithmetic as T calls of `step`.

        Why not a loop of `step`: only h @ W_h is recurrent. Everything that depends on the
        inputs alone (the input layer, each gate's masked input-to-gate product) and everything
        after the cell (the linear layers, the heads) runs once for all T steps, so a training
        update dispatches ~4x fewer operations (the paper's sizes are dispatch-bound, on a GPU
        too: docs/BENCHMARKS.md)."""
        n_in = self.config.input_size
        B, T, _ = x.shape
        z = F.relu(self.input_layer(x.transpose(0, 1)))  # (T, B, n_in)
        # The masks are per trajectory, so broadcasting them over T keeps them fixed in time.
        zx = (z.unsqueeze(0) * masks.lstm_x.unsqueeze(1)).reshape(N_GATES, T * B, n_in)
        x_gates = torch.baddbmm(self.lstm_bias, zx, self.lstm_weight[:, :n_in])
        # One unbind, not T slices: its backward is one stack, where T slices would each
        # scatter into a full-size zero gradient.
        x_steps = x_gates.view(N_GATES, T, B, -1).transpose(0, 1).unbind(0)
        w_h = self.lstm_weight[:, n_in:]
        h = torch.zeros(B, self.config.lstm_size, device=x.device, dtype=x.dtype)
        c = torch.zeros_like(h)
        hs, cs = [h], [c]
        for x_t in x_steps:
            gates = torch.baddbmm(x_t, h.unsqueeze(0) * masks.lstm_h, w_h)
            i, f, g, o = gates.unbind(0)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            cs.append(c)
        h_all, c_all = torch.stack(hs, 1), torch.stack(cs, 1)
        # Each trajectory's masks, broadcast over its T steps.
        fc1, fc2, head = (m.unsqueeze(1) for m in (masks.fc1, masks.fc2, masks.head))
        return self._readout(h_all[:, 1:], fc1, fc2, head), h_all, c_all


def gaussian_nll(target: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """-log N(target; mean, std^2), elementwise."""
    return 0.5 * ((target - mean) / std).pow(2) + std.log() + LOG_SQRT_2PI


def weight_penalty(module: nn.Module) -> torch.Tensor:
    """||W||^2 over all learnable parameters (A.2.1)."""
    return sum(p.pow(2).sum() for p in module.parameters())


class Normaliser(nn.Module):
    """Zero mean, unit variance statistics of one quantity, refit before each training period."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, data: torch.Tensor) -> None:
        flat = data.reshape(-1, self.mean.shape[0])
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0, correction=0).clamp_min(self.eps))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class DynamicsModel(nn.Module):
    """The model interface used by policy training and the gate; raw units outside."""

    def __init__(self, obs_dim: int, act_dim: int, config: DynamicsConfig):
        super().__init__()
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.net = DropoutLSTMNet(obs_dim + act_dim, obs_dim, config)
        self.inputs = Normaliser(obs_dim + act_dim)
        self.deltas = Normaliser(obs_dim)
        self.rewards = Normaliser(1)
        self.register_buffer("dataset_size", torch.tensor(1))  # N of the prior term

    @torch.no_grad()
    def fit_normaliser(self, data: TrajectoryBatch) -> None:
        """Refits the input and output statistics on all data (A.2.1) and records N."""
        self.inputs.fit(torch.cat([data.obs[:, :-1], data.actions], dim=-1))
        self.deltas.fit(data.obs[:, 1:] - data.obs[:, :-1])
        self.rewards.fit(data.rewards.unsqueeze(-1))
        self.dataset_size.fill_(data.obs.shape[0])

    def sample_masks(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> DropoutMasks:
        return self.net.sample_masks(batch_size, generator)

    def reset(self, batch_size: int, masks: DropoutMasks | None = None) -> ModelState:
        """Fresh recurrent state for `batch_size` trajectories, each with its own mask
        (sampled here when `masks` is None)."""
        if masks is None:
            masks = self.sample_masks(batch_size)
        if masks.batch_size != batch_size:
            raise ValueError(f"{masks.batch_size} masks for {batch_size} trajectories")
        return self.net.initial_state(masks)

    def predict(
        self, state: ModelState, obs: torch.Tensor, action: torch.Tensor
    ) -> tuple[Prediction, ModelState]:
        """Normalised Gaussian predictions for (obs, action) in raw units."""
        x = self.inputs.normalise(torch.cat([obs, action], dim=-1))
        return self.net.step(x, state)

    def sample(
        self,
        state: ModelState,
        obs: torch.Tensor,
        action: torch.Tensor,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, ModelState]:
        """One model step: (next obs, reward, new state), reparameterised so gradients flow
        to `action` and `obs`. State means are deltas from the previous state (A.2.1)."""
        pred, state = self.predict(state, obs, action)
        delta, reward = pred.delta_mean, pred.reward_mean
        if not deterministic:
            delta = delta + pred.delta_std * torch.randn_like(delta)
            reward = reward + pred.reward_std * torch.randn_like(reward)
        next_obs = obs + self.deltas.denormalise(delta).to(obs.dtype)
        reward = self.rewards.denormalise(reward).float()
        return next_obs, reward, state

    @torch.no_grad()
    def folded(self, dtype: torch.dtype = torch.float32) -> FoldedDynamics:
        """This model, rewritten for fast batched rollouts without gradients (the EPS gate)."""
        return FoldedDynamics(self, dtype)

    def replay(
        self, batch: TrajectoryBatch, masks: DropoutMasks
    ) -> tuple[Prediction, ModelState]:
        """Teacher-forced pass over recorded trajectories, all steps at once: predictions
        (B, T, ...) and the recurrent states before every step, h and c (B, T + 1, lstm_size)
        (the last follows the final action). `observe` step by step gives the same."""
        x = self.inputs.normalise(torch.cat([batch.obs[:, :-1], batch.actions], dim=-1))
        prediction, h, c = self.net.sequence(x, masks)
        return prediction, ModelState(h, c, masks)

    def observe(
        self, batch: TrajectoryBatch, masks: DropoutMasks
    ) -> tuple[list[Prediction], list[ModelState]]:
        """Teacher-forced pass over recorded trajectories, one `step` at a time: the prediction
        for every step and the recurrent state before every step (T + 1 states; the last
        follows the final action). The reference for `replay`."""
        state = self.reset(batch.obs.shape[0], masks)
        predictions, states = [], [state]
        for t in range(batch.actions.shape[1]):
            pred, state = self.predict(state, batch.obs[:, t], batch.actions[:, t])
            predictions.append(pred)
            states.append(state)
        return predictions, states

    def loss(
        self, batch: TrajectoryBatch, masks: DropoutMasks | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """A.2.1: NLL of next-state deltas and rewards summed over time, averaged over the B
        trajectories (one mask each), plus (eta / N) ||W||^2, N the data points in the buffer
        (transitions by default; trajectories with `prior_data_unit="trajectory"`)."""
        n_traj = batch.obs.shape[0]
        if masks is None:
            masks = self.sample_masks(n_traj)
        pred, _ = self.replay(batch, masks)
        delta_target = self.deltas.normalise(batch.obs[:, 1:] - batch.obs[:, :-1])
        reward_target = self.rewards.normalise(batch.rewards.unsqueeze(-1)).squeeze(-1)
        nll = gaussian_nll(delta_target, pred.delta_mean, pred.delta_std).sum((1, 2))
        nll = nll + gaussian_nll(reward_target, pred.reward_mean, pred.reward_std).sum(1)
        nll = nll.mean()
        n_data = float(self.dataset_size)
        if self.config.prior_data_unit == "transition":
            n_data *= batch.actions.shape[1]
        prior = self.config.eta / n_data * weight_penalty(self.net)
        loss = nll + prior
        stats = {"model/nll": nll.item(), "model/prior": prior.item(), "model/loss": loss.item()}
        return loss, stats


class DynamicsTrainer:
    """Owns the model's optimiser; one `train` call is one training period of Alg. 1."""

    def __init__(self, model: DynamicsModel, config: DynamicsConfig):
        self.model, self.config = model, config
        self.optim = torch.optim.Adam(model.net.parameters(), lr=config.lr)

    def train(
        self, buffer: EpisodeBuffer, generator: torch.Generator | None = None,
        updates: int | None = None,
    ) -> dict[str, float]:
        """Refits the normaliser on every stored trajectory (A.2.1), then takes `updates`
        gradient steps on batches of B trajectories; returns the last step's stats."""
        self.model.fit_normaliser(buffer.all_trajectories())
        stats: dict[str, float] = {}
        for _ in range(self.config.updates_per_episode if updates is None else updates):
            batch = buffer.sample_trajectories(self.config.batch_trajectories, generator)
            loss, stats = self.model.loss(batch)
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.model.net.parameters(), self.config.max_grad_norm)
            self.optim.step()
        return stats


class _FoldedMasks(NamedTuple):
    """A mask record as 0/1 in the compute dtype (the 1 / (1 - p) scale is in the weights), with
    the step's scratch buffer for the LSTM's masked gate inputs."""

    lstm_x: torch.Tensor  # (4, B, input_size)
    lstm_h: torch.Tensor  # (4, B, lstm_size)
    fc1: torch.Tensor
    fc2: torch.Tensor
    head: torch.Tensor
    gate_in: torch.Tensor  # (4, B, input_size + lstm_size), rewritten at every step


class FoldedDynamics:
    """`DynamicsModel.reset` and `.sample` for many imagined rows without gradients (the EPS
    gate, A.2.4): the same function, rewritten so that a step dispatches fewer, cheaper operations.

    - Weights cast once to `dtype`; the masks' 1 / (1 - p) scale folded into the weights after
      them, so masks are exact 0/1 in bfloat16.
    - The LSTM's masked gate inputs written straight into one buffer (no concatenation), the
      cell gate's weights doubled so one sigmoid serves all four gates (tanh(z) = 2 sigmoid(2z)
      - 1: this torch's CPU tanh is 4-5x slower than its sigmoid, docs/BENCHMARKS.md).
    - The four heads as one product; normalisation in float32 around the compute dtype, as
      autocast would do it.
    Written by hand because autocast cannot do the folding and torch.compile takes ~45 s to
    compile a rollout step on this CPU (docs/BENCHMARKS.md, gate latency). A snapshot."""

    def __init__(self, model: DynamicsModel, dtype: torch.dtype):
        net, cfg = model.net, model.config
        inv_keep = 1.0 / (1.0 - cfg.dropout)
        self.dtype, self.min_std, self.n_in = dtype, cfg.min_std, cfg.input_size
        self.obs_dim = model.obs_dim
        self.in_mean, self.in_inv_std = model.inputs.mean.clone(), 1.0 / model.inputs.std
        self.input_layer = (net.input_layer.weight.to(dtype), net.input_layer.bias.to(dtype))
        lstm_w, lstm_b = net.lstm_weight.detach() * inv_keep, net.lstm_bias.detach().clone()
        lstm_w[2] *= 2.0  # the cell gate: tanh(z) = 2 sigmoid(2z) - 1
        lstm_b[2] *= 2.0
        self.lstm = (lstm_w.to(dtype), lstm_b.to(dtype))
        self.fc1 = ((net.fc1.weight * inv_keep).to(dtype), net.fc1.bias.to(dtype))
        self.fc2 = ((net.fc2.weight * inv_keep).to(dtype), net.fc2.bias.to(dtype))
        # Heads in the order (delta mean, reward mean, delta std, reward std): the first half is
        # the mean of (delta, reward), the second the raw std.
        heads = (net.delta_mean, net.reward_mean, net.delta_std, net.reward_std)
        self.head = (torch.cat([h.weight for h in heads]).mul(inv_keep).to(dtype),
                     torch.cat([h.bias for h in heads]).to(dtype))
        self.out_mean = torch.cat([model.deltas.mean, model.rewards.mean])
        self.out_std = torch.cat([model.deltas.std, model.rewards.std])

    def reset(self, batch_size: int, masks: DropoutMasks | None = None) -> ModelState:
        if masks is None or masks.batch_size != batch_size:
            raise ValueError("FoldedDynamics needs a mask record for every row")
        folded = [(m != 0).to(self.dtype) for m in masks]
        n_h = folded[1].shape[-1]
        gate_in = torch.empty(4, batch_size, self.n_in + n_h, dtype=self.dtype,
                              device=masks.fc1.device)
        c = torch.zeros(batch_size, n_h, device=masks.fc1.device)
        return ModelState(c.to(self.dtype), c, _FoldedMasks(*folded, gate_in))  # type: ignore[arg-type]

    def sample(self, state: ModelState, obs: torch.Tensor, action: torch.Tensor,
               deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, ModelState]:
        """As `DynamicsModel.sample`; the noise is drawn in float32, as the model draws it in
        float32 (the same draws, in the same order)."""
        masks: _FoldedMasks = state.masks  # type: ignore[assignment]
        x = ((torch.cat([obs, action], dim=-1) - self.in_mean) * self.in_inv_std).to(self.dtype)
        z = F.linear(x, *self.input_layer).relu_()
        torch.mul(z, masks.lstm_x, out=masks.gate_in[..., :self.n_in])
        torch.mul(state.h, masks.lstm_h, out=masks.gate_in[..., self.n_in:])
        # The cell in float32, as under autocast; h goes on in the compute dtype (mixed-dtype
        # operations would copy their inputs first).
        gates = torch.baddbmm(self.lstm[1], masks.gate_in, self.lstm[0]).float().sigmoid_()
        i, f, g, o = gates.unbind(0)
        c = torch.addcmul(f * state.c, i, g.mul(2.0).sub_(1.0))
        h = (o * torch.sigmoid(c * 2.0).mul_(2.0).sub_(1.0)).to(self.dtype)
        y = F.linear(h * masks.fc1, *self.fc1).relu_()
        y = F.linear(y * masks.fc2, *self.fc2).relu_()
        out = F.linear(y * masks.head, *self.head).float()
        n = self.obs_dim + 1
        value = torch.addcmul(self.out_mean, out[:, :n], self.out_std)
        if not deterministic:
            # softplus over the whole product, then the std half: a column slice is strided,
            # and softplus on a strided tensor takes 10x as long here.
            std = (F.softplus(out)[:, n:] + self.min_std) * self.out_std
            noise = torch.cat([torch.randn(obs.shape[0], self.obs_dim, device=obs.device),
                               torch.randn(obs.shape[0], 1, device=obs.device)], dim=1)
            value = torch.addcmul(value, std, noise)
        next_obs = obs + value[:, :self.obs_dim].to(obs.dtype)
        return next_obs, value[:, self.obs_dim], ModelState(h, c, masks)  # type: ignore[arg-type]
