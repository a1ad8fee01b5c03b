"""The EPS gate (Sec. 3.2, A.2.4, A.2.5) against a model whose returns we control."""

import json
from typing import NamedTuple

import pytest
import torch

from learner import gate
from learner.config import DynamicsConfig, GateConfig
from learner.dynamics import DynamicsModel, FoldedDynamics
from learner.gate import (
    GateRecord,
    decide,
    mb_dominates,
    must_force_mf,
    posterior_misses_mf,
    resolve_compute_dtype,
)
from learner.networks import TanhGaussianPolicy

OBS, ACT, T = 3, 2, 5


class SignMasks(NamedTuple):
    sign: torch.Tensor  # one "mask" per trajectory: the sign of that model's reward

    @property
    def batch_size(self) -> int:
        return self.sign.shape[0]

    def repeat_interleave(self, repeats: int) -> "SignMasks":
        return SignMasks(self.sign.repeat_interleave(repeats))


class SignModel:
    """Reward = sign(w_i) * mean(action): under mask i the policy pushing sign(w_i) wins."""

    def __init__(self, signs):
        self.signs = torch.tensor(signs, dtype=torch.float32)

    def sample_masks(self, n, generator=None):
        assert n == len(self.signs)
        return SignMasks(self.signs)

    def reset(self, batch_size, masks):
        assert masks.batch_size == batch_size
        return masks

    def sample(self, state, obs, action, deterministic=False):
        return obs, state.sign * action.mean(-1), state


class ConstantPolicy:
    def __init__(self, value: float):
        self.value = value

    def sample(self, obs, deterministic=False):
        n = obs.shape[0]
        return torch.full((n, ACT), self.value), torch.zeros(n)


def gate_config(k: int, m: int = 3) -> GateConfig:
    return GateConfig(num_masks=k, rollouts_per_mask=m, horizon=T)


MB_POLICY, MF_POLICY = ConstantPolicy(0.5), ConstantPolicy(-0.5)
INIT = torch.zeros(4, OBS)
SMALL_DYNAMICS = DynamicsConfig(input_size=16, lstm_size=16, hidden_sizes=(16, 16), dropout=0.3)


@pytest.mark.parametrize(
    ("signs", "choice"),
    [
        ([1, 1, 1, 1, 1], "mb"),  # every mask favours MB
        ([-1, 1, 1, 1, 1], "mf"),  # one mask does not: MF stays in the EPS
        ([1, 1, 1, 1, -1], "mf"),
        ([1, 1, 0, 1, 1], "mf"),  # a tie is not a strict improvement
        ([-1, -1, -1, -1, -1], "mf"),
    ],
)
def test_mb_is_chosen_only_when_every_mask_favours_it(signs, choice):
    record = decide(SignModel(signs), MB_POLICY, MF_POLICY, INIT, gate_config(len(signs)))
    assert (record.choice, record.reason, record.eps_choice) == (choice, "eps", choice)
    expected_mb = [0.5 * T * s for s in signs]
    assert record.j_mb == pytest.approx(expected_mb)
    assert record.j_mf == pytest.approx([-j for j in expected_mb])
    assert (record.num_masks, record.rollouts_per_mask, record.horizon) == (len(signs), 3, T)


@pytest.mark.parametrize(
    ("j_mb", "j_mf", "expected"),
    [([2.0, 3.0], [1.0, 2.9], True), ([2.0, 3.0], [1.0, 3.0], False),
     ([2.0, 3.0], [2.5, 0.0], False), ([-1.0], [-2.0], True)],
)
def test_mb_dominates_needs_a_strictly_positive_margin_for_all_masks(j_mb, j_mf, expected):
    assert mb_dominates(torch.tensor(j_mb), torch.tensor(j_mf)) is expected


@pytest.mark.parametrize(
    ("recent", "forced"),
    [(["mb"] * 9, True), (["mf"] + ["mb"] * 9, True), (["mb"] * 8, False),
     (["mb"] * 8 + ["mf"], False), (["mf"] * 9, False), ([], False)],
)
def test_must_force_mf_after_nine_mb_episodes(recent, forced):
    assert must_force_mf(recent, mf_every=10) is forced


def test_at_least_one_episode_in_every_ten_runs_mf():
    model, history = SignModel([1, 1, 1]), []
    for _ in range(100):
        record = decide(model, MB_POLICY, MF_POLICY, INIT, gate_config(3), history)
        history.append(record.choice)
        if record.choice == "mf":
            assert (record.reason, record.eps_choice) == ("forced-mf", "mb")
    for start in range(len(history) - 9):
        assert "mf" in history[start : start + 10]
    assert history.count("mb") == 90  # and no more MF than the rule needs


def test_all_rollouts_of_a_policy_go_through_the_model_in_one_batch(monkeypatch):
    calls = []
    real = gate.imagine

    def spy(model, policy, init_obs, masks, horizon, **kwargs):
        calls.append((policy, init_obs.shape[0], masks.batch_size, horizon))
        return real(model, policy, init_obs, masks, horizon, **kwargs)

    monkeypatch.setattr(gate, "imagine", spy)
    decide(SignModel([1] * 7), MB_POLICY, MF_POLICY, INIT, gate_config(7, m=4))
    assert calls == [(MB_POLICY, 28, 28, T), (MF_POLICY, 28, 28, T)]


def test_each_mask_is_shared_by_its_m_rollouts_and_held_over_time(monkeypatch):
    k, m = 4, 3
    model = DynamicsModel(OBS, ACT, SMALL_DYNAMICS)
    seen = []
    sample = FoldedDynamics.sample  # the form the gate rolls out with

    def spy(self, state, obs, action, deterministic=False):
        seen.append(state.masks)
        return sample(self, state, obs, action, deterministic)

    monkeypatch.setattr(FoldedDynamics, "sample", spy)
    policy = TanhGaussianPolicy(OBS, ACT, (8,))
    decide(model, policy, policy, torch.randn(5, OBS), gate_config(k, m))
    assert len(seen) == 2 * T
    first = seen[0].fc1
    for masks in seen:
        assert torch.equal(masks.fc1, first) and torch.equal(masks.lstm_h, seen[0].lstm_h)
    groups = first.view(k, m, -1)
    assert all(torch.equal(groups[i, j], groups[i, 0]) for i in range(k) for j in range(m))
    assert all(not torch.equal(groups[i, 0], groups[j, 0]) for i in range(k) for j in range(i))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_decide_with_real_networks_gives_a_complete_record(dtype):
    model = DynamicsModel(OBS, ACT, SMALL_DYNAMICS)
    mb, mf = TanhGaussianPolicy(OBS, ACT, (16,)), TanhGaussianPolicy(OBS, ACT, (8,))
    config = GateConfig(num_masks=6, rollouts_per_mask=2, horizon=T, compute_dtype=dtype)
    record = decide(model, mb, mf, torch.randn(3, OBS), config, versions=(7, 9))
    assert record.choice in ("mb", "mf") and record.reason == "eps"
    assert len(record.pairs) == 6 and torch.isfinite(torch.tensor(record.pairs)).all()
    assert (record.mb_version, record.mf_version) == (7, 9)
    assert record.compute_seconds > 0 and record.compute_dtype == dtype
    again = GateRecord(**json.loads(json.dumps(record.to_dict())))
    assert again == record


def test_auto_compute_dtype_is_bfloat16_only_where_the_cpu_has_it(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compute_dtype("float32", cpu) == "float32"
    assert resolve_compute_dtype("bfloat16", cuda) == "bfloat16"
    assert resolve_compute_dtype("auto", cuda) == "float32"
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda n=native: n)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert resolve_compute_dtype("auto", cpu) == expected
        record = decide(SignModel([1]), MB_POLICY, MF_POLICY, INIT,
                        GateConfig(num_masks=1, horizon=T))
        assert record.compute_dtype == expected


def test_gate_needs_a_horizon():
    with pytest.raises(ValueError, match="horizon"):
        decide(SignModel([1]), MB_POLICY, MF_POLICY, INIT, GateConfig(num_masks=1))


@pytest.mark.parametrize(("choice", "reason"), [("both", "eps"), ("mf", "because")])
def test_records_refuse_unknown_choices_and_reasons(choice, reason):
    with pytest.raises(ValueError):
        GateRecord(choice, reason)


def test_the_gate_estimates_with_folded_policies_what_it_would_with_the_originals(monkeypatch):
    model = DynamicsModel(OBS, ACT, SMALL_DYNAMICS)
    mb, mf = TanhGaussianPolicy(OBS, ACT, (16, 16)), TanhGaussianPolicy(OBS, ACT, (8,))
    init, config = torch.randn(3, OBS), GateConfig(num_masks=6, rollouts_per_mask=2, horizon=T,
                                                   compute_dtype="float32")

    def estimates():
        torch.manual_seed(1)
        return gate.estimate_returns(model, mb, mf, init, config, torch.Generator().manual_seed(2))

    folded = estimates()
    monkeypatch.setattr(gate, "_folded", lambda policy, dtype: policy)
    originals = estimates()
    for got, expected in zip(folded, originals, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(("recent", "misses"), [
    ([-9.0, 1.0, 2.0, 3.0], True),  # the last three average 2.0, above every mask's 1.5
    ([1.0, 1.0, 2.0], False),  # 4/3: inside the masks' range
    ([1.5, 1.5, 1.5], False),  # equal to the highest: not outside
    ([5.0, 5.0], False),  # too few MF episodes yet
])
def test_posterior_misses_mf_when_recent_real_returns_beat_every_mask(recent, misses):
    assert posterior_misses_mf(torch.tensor([-3.0, 0.5, 1.5]), recent, episodes=3) is misses


@pytest.mark.parametrize("check", [False, True])
def test_the_posterior_check_keeps_mf_only_when_asked_and_the_model_misses_it(check):
    # Every mask favours MB (J-hat(MF | w_i) = -2.5 each); the MF episodes really scored 0.
    config = GateConfig(num_masks=3, rollouts_per_mask=2, horizon=T, posterior_check=check,
                        posterior_check_episodes=2)
    record = decide(SignModel([1, 1, 1]), MB_POLICY, MF_POLICY, INIT, config,
                    recent_mf_returns=[0.0, 0.0])
    assert record.eps_choice == "mb"
    assert (record.choice, record.reason) == (("mf", "model-check") if check else ("mb", "eps"))
    inside = decide(SignModel([1, 1, 1]), MB_POLICY, MF_POLICY, INIT, config,
                    recent_mf_returns=[-3.0, -3.0])  # within reach of the masks' -2.5
    assert (inside.choice, inside.reason) == ("mb", "eps")
