"""The dropout LSTM model (A.2.1): masks per trajectory held over time, normalisation, the loss,
and that it actually learns a known linear system."""

import dataclasses
import itertools

import pytest
import torch

from learner.buffer import EpisodeBuffer, TrajectoryBatch
from learner.config import DynamicsConfig
from learner.dynamics import DropoutMasks, DynamicsModel, DynamicsTrainer, weight_penalty
from learner.imagination import imagine
from learner.networks import TanhGaussianPolicy

OBS, ACT, T = 3, 2, 8
SMALL = DynamicsConfig(input_size=24, lstm_size=24, hidden_sizes=(24, 24), dropout=0.2,
                       batch_trajectories=16, eta=1.0, lr=3e-3)


def spy_masks(model: DynamicsModel, monkeypatch) -> list[DropoutMasks]:
    """Records the mask record the network is given at every step."""
    seen: list[DropoutMasks] = []
    step = model.net.step

    def recording_step(x, state):
        seen.append(state.masks)
        return step(x, state)

    monkeypatch.setattr(model.net, "step", recording_step)
    return seen


def assert_same_mask_every_step_and_distinct_rows(seen: list[DropoutMasks], steps: int):
    assert len(seen) == steps
    for masks in seen[1:]:
        for a, b in zip(masks, seen[0], strict=True):
            assert torch.equal(a, b)
    first = seen[0]
    rows = first.batch_size
    flat = torch.cat([first.lstm_x.transpose(0, 1).reshape(rows, -1),
                      first.lstm_h.transpose(0, 1).reshape(rows, -1),
                      first.fc1, first.fc2, first.head], dim=1)
    for i, j in itertools.combinations(range(rows), 2):
        assert not torch.equal(flat[i], flat[j]), f"trajectories {i} and {j} share a mask"


def test_masks_are_held_over_a_rollout_and_differ_across_trajectories(monkeypatch):
    model = DynamicsModel(OBS, ACT, SMALL)
    seen = spy_masks(model, monkeypatch)
    policy = TanhGaussianPolicy(OBS, ACT, (8,))
    with torch.inference_mode():
        imagine(model, policy, torch.randn(6, OBS), model.sample_masks(6), horizon=T)
    assert_same_mask_every_step_and_distinct_rows(seen, T)


def test_masks_are_held_over_time_in_training_too(monkeypatch):
    """Training replays whole sequences at once (`replay`): one mask record per trajectory for
    all T steps. That it computes what T masked `step`s compute is the next test."""
    model = DynamicsModel(OBS, ACT, SMALL)
    seen: list[DropoutMasks] = []
    sequence = model.net.sequence

    def recording_sequence(x, masks):
        seen.append(masks)
        return sequence(x, masks)

    monkeypatch.setattr(model.net, "sequence", recording_sequence)
    batch = TrajectoryBatch(torch.randn(5, T + 1, OBS), torch.randn(5, T, ACT), torch.randn(5, T))
    model.loss(batch)
    assert len(seen) == 1 and seen[0].batch_size == 5
    assert_same_mask_every_step_and_distinct_rows(seen, 1)


def test_replay_of_whole_sequences_equals_stepping_one_step_at_a_time(monkeypatch):
    model = DynamicsModel(OBS, ACT, SMALL)
    batch = TrajectoryBatch(torch.randn(6, T + 1, OBS), torch.randn(6, T, ACT), torch.randn(6, T))
    model.fit_normaliser(batch)
    masks = model.sample_masks(6)
    seen = spy_masks(model, monkeypatch)
    stepped, states = model.observe(batch, masks)
    assert_same_mask_every_step_and_distinct_rows(seen, T)  # the reference holds the mask
    replayed, replay_states = model.replay(batch, masks)
    for field, whole in zip(replayed._fields, replayed, strict=True):
        torch.testing.assert_close(whole, torch.stack([getattr(p, field) for p in stepped], 1))
    torch.testing.assert_close(replay_states.h, torch.stack([s.h for s in states], 1))
    torch.testing.assert_close(replay_states.c, torch.stack([s.c for s in states], 1))


@pytest.mark.parametrize("deterministic", [False, True])
def test_the_folded_model_samples_what_the_model_samples(deterministic):
    """FoldedDynamics (the gate's form) is the same function, with the same noise draws."""
    torch.manual_seed(0)
    model = DynamicsModel(OBS, ACT, SMALL)
    batch = TrajectoryBatch(torch.randn(6, T + 1, OBS) * 3 + 1, torch.randn(6, T, ACT),
                            torch.randn(6, T) * 5 - 2)
    model.fit_normaliser(batch)
    with torch.no_grad():
        for p in model.net.parameters():
            p.mul_(3.0)  # past the sigmoids' linear range
    masks, obs, action = model.sample_masks(6), batch.obs[:, 0], batch.actions[:, 0]
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            fast = model.folded(dtype)
            state, fast_state = model.reset(6, masks), fast.reset(6, masks)
            for t in range(T):
                torch.manual_seed(t)
                expected = model.sample(state, obs, action, deterministic=deterministic)
                torch.manual_seed(t)
                got = fast.sample(fast_state, obs, action, deterministic=deterministic)
                state, fast_state = expected[2], got[2]
                for a, b in zip((*got[:2], fast_state.c), (*expected[:2], state.c), strict=True):
                    if dtype == torch.float32:
                        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
                    else:  # to bfloat16's precision, over all T steps
                        assert (a - b).norm() <= 0.02 * b.norm()


def test_masks_are_bernoulli_scaled_by_keep_probability():
    masks = DynamicsModel(OBS, ACT, SMALL).sample_masks(400)
    keep = 1 - SMALL.dropout
    for m in masks:
        values = torch.unique(m)
        assert len(values) == 2 and values[0] == 0 and values[1] == pytest.approx(1 / keep)
        assert (m > 0).float().mean().item() == pytest.approx(keep, abs=0.02)
    assert masks.lstm_x.shape == (4, 400, SMALL.input_size)  # one mask per gate
    assert masks.lstm_h.shape == (4, 400, SMALL.lstm_size)


@pytest.mark.parametrize("path", ["lstm_x", "lstm_h"])
def test_dropout_masks_act_inside_the_lstm_cell(path):
    """Zeroing the input-to-gate (hidden-to-gate) masks cuts x (h) out of the cell."""
    net = DynamicsModel(OBS, ACT, SMALL).net
    masks = net.sample_masks(4)
    masks = masks._replace(**{path: torch.zeros_like(getattr(masks, path))})
    state = net.initial_state(masks)
    state = state._replace(h=torch.randn_like(state.h), c=torch.randn_like(state.c))
    x = torch.randn(4, OBS + ACT)
    if path == "lstm_x":
        other_x, other_state = torch.randn_like(x), state
    else:
        other_x, other_state = x, state._replace(h=torch.randn_like(state.h))
    (a, _), (b, _) = net.step(x, state), net.step(other_x, other_state)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v)


@pytest.mark.parametrize(("unit", "n_data"), [("trajectory", 6), ("transition", 6 * T)])
def test_loss_is_mean_over_trajectories_of_nll_summed_over_time_plus_prior(unit, n_data):
    model = DynamicsModel(OBS, ACT, dataclasses.replace(SMALL, prior_data_unit=unit))
    batch = TrajectoryBatch(torch.randn(2, T + 1, OBS), torch.randn(2, T, ACT), torch.randn(2, T))
    model.fit_normaliser(TrajectoryBatch(*(torch.cat([x, x, x]) for x in batch)))  # N = 6
    masks = model.sample_masks(2)
    both, stats = model.loss(batch, masks)
    singles = [
        model.loss(TrajectoryBatch(*(x[i : i + 1] for x in batch)), masks.index(torch.tensor([i])))
        for i in range(2)
    ]
    prior = SMALL.eta / n_data * weight_penalty(model.net)
    torch.testing.assert_close(stats["model/prior"], prior.item())
    torch.testing.assert_close(both, (singles[0][0] + singles[1][0]) / 2)


def test_normaliser_is_refit_to_zero_mean_unit_variance():
    model = DynamicsModel(OBS, ACT, SMALL)
    data = TrajectoryBatch(3 + 2 * torch.randn(20, T + 1, OBS), torch.randn(20, T, ACT) - 1,
                           5 + torch.randn(20, T))
    model.fit_normaliser(data)
    x = model.inputs.normalise(torch.cat([data.obs[:, :-1], data.actions], -1)).reshape(-1, 5)
    torch.testing.assert_close(x.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0, correction=0), torch.ones(5), atol=1e-4, rtol=0)
    assert int(model.dataset_size) == 20


def linear_system_buffer(n: int, seed: int) -> EpisodeBuffer:
    """x' = A x + B u + noise, r = c.x + d.u + noise, with uniformly random actions."""
    g = torch.Generator().manual_seed(seed)
    A = torch.tensor([[0.9, 0.2, 0.0], [-0.2, 0.9, 0.1], [0.0, 0.0, 0.8]])
    B = torch.tensor([[0.5, 0.0], [0.0, 0.4], [0.3, -0.3]])
    c, d = torch.tensor([1.0, -0.5, 0.2]), torch.tensor([0.3, 0.1])
    buffer = EpisodeBuffer(OBS, ACT, T)
    for _ in range(n):
        x = torch.randn(OBS, generator=g)
        obs, acts, rews = [x], [], []
        for _ in range(T):
            u = torch.rand(ACT, generator=g) * 2 - 1
            rews.append(c @ x + d @ u + 0.01 * torch.randn((), generator=g))
            x = A @ x + B @ u + 0.01 * torch.randn(OBS, generator=g)
            obs.append(x)
            acts.append(u)
        buffer.add_episode(torch.stack(obs), torch.stack(acts), torch.stack(rews))
    return buffer


def one_step_errors(model: DynamicsModel, data: TrajectoryBatch):
    """Mean squared error of teacher-forced one-step mean predictions (next obs, reward)."""
    with torch.no_grad():
        _, states = model.observe(data, model.sample_masks(data.obs.shape[0]))
        steps = data.actions.shape[1]
        obs_err = rew_err = 0.0
        for t, state in enumerate(states[:-1]):
            next_obs, reward, _ = model.sample(state, data.obs[:, t], data.actions[:, t], True)
            obs_err += (next_obs - data.obs[:, t + 1]).pow(2).mean().item() / steps
            rew_err += (reward - data.rewards[:, t]).pow(2).mean().item() / steps
    return obs_err, rew_err


def test_loss_falls_and_predictions_beat_a_constant_baseline_on_a_linear_system():
    train, test = linear_system_buffer(64, seed=0), linear_system_buffer(16, seed=1)
    config = dataclasses.replace(SMALL, input_size=32, lstm_size=32, hidden_sizes=(32, 32),
                                 dropout=0.05)
    model = DynamicsModel(OBS, ACT, config)
    trainer = DynamicsTrainer(model, config)
    gen = torch.Generator().manual_seed(0)
    first = trainer.train(train, gen, updates=1)["model/loss"]
    last = trainer.train(train, gen, updates=400)["model/loss"]
    assert last < 0.25 * first

    data = test.all_trajectories()
    obs_err, rew_err = one_step_errors(model, data)
    # Constant baseline: the mean delta and mean reward of the training data.
    all_train = train.all_trajectories()
    mean_delta = (all_train.obs[:, 1:] - all_train.obs[:, :-1]).reshape(-1, OBS).mean(0)
    base_obs = (data.obs[:, :-1] + mean_delta - data.obs[:, 1:]).pow(2).mean().item()
    base_rew = (all_train.rewards.mean() - data.rewards).pow(2).mean().item()
    assert obs_err < 0.2 * base_obs
    assert rew_err < 0.2 * base_rew
