"""Save -> load -> continue equals never having stopped."""

import io

import numpy as np
import pytest
import torch

from learner.agent import UnifiedAgent
from learner.checkpoint import agent_from_bytes, checkpoint_bytes, load_checkpoint, save_checkpoint
from learner.config import make_config

OBS, ACT, T = 4, 2, 6


def episode(seed: int):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(T + 1, OBS)), rng.uniform(-1, 1, (T, ACT)), rng.normal(size=T)


def step(agent: UnifiedAgent, seed: int):
    record = agent.decide().to_dict()
    stats = agent.observe_episode(*episode(seed))
    del record["compute_seconds"]
    return record, {k: v for k, v in stats.items() if not k.startswith("time/")}


def all_tensors(agent: UnifiedAgent) -> dict[str, torch.Tensor]:
    out = {f"sac.{k}": v for k, v in agent.sac.actor.state_dict().items()}
    out.update({f"q1.{k}": v for k, v in agent.sac.q1.state_dict().items()})
    out.update({f"q2t.{k}": v for k, v in agent.sac.q2_target.state_dict().items()})
    if agent.model is not None:
        out.update({f"model.{k}": v for k, v in agent.model.state_dict().items()})
        out.update({f"mb.{k}": v for k, v in agent.mb.policy.state_dict().items()})
        if agent.mb.value is not None:
            out.update({f"value.{k}": v for k, v in agent.mb.value.state_dict().items()})
    return out


@pytest.mark.parametrize(
    ("algorithm", "training"),
    [("unified", "full_trajectory"), ("unified", "dreamer"), ("sac", "full_trajectory"),
     ("mbrl", "full_trajectory")],
)
def test_resume_gives_the_same_next_updates_as_not_stopping(algorithm, training):
    config = make_config("cpu-small", algorithm=algorithm, obs_dim=OBS, act_dim=ACT,
                         episode_steps=T, device="cpu", mb_policy__training=training,
                         sac__auto_entropy=True, sac__updates_per_episode=40)
    agent = UnifiedAgent(config)
    for seed in range(4):
        step(agent, seed)
    saved = checkpoint_bytes(agent)

    unbroken = [step(agent, seed) for seed in (10, 11)]
    resumed_agent = agent_from_bytes(saved)
    resumed = [step(resumed_agent, seed) for seed in (10, 11)]

    assert resumed == unbroken  # gate records (returns, choices) and every loss
    a, b = all_tensors(agent), all_tensors(resumed_agent)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed_agent.versions == agent.versions
    assert list(resumed_agent.recent_choices) == list(agent.recent_choices)
    assert resumed_agent.sac.alpha == agent.sac.alpha


def test_checkpoint_restores_buffer_config_counters_and_numpy_rng(tmp_path):
    agent = UnifiedAgent(make_config("cpu-small", obs_dim=OBS, act_dim=ACT, episode_steps=T,
                                     device="cpu", sac__updates_per_episode=40))
    for seed in range(3):
        step(agent, seed)
    np.random.seed(42)
    path = tmp_path / "learner.pt"
    save_checkpoint(agent, path)
    expected_draw = np.random.random()
    restored = load_checkpoint(path)
    assert np.random.random() == expected_draw
    assert restored.config == agent.config
    assert len(restored.buffer) == 3 and restored.episodes_seen == 3
    torch.testing.assert_close(restored.buffer.all_trajectories().obs,
                               agent.buffer.all_trajectories().obs)
    # Warm-up episodes run MF: their real returns are what the posterior check compares.
    assert list(restored.recent_mf_returns) == [
        pytest.approx(float(episode(seed)[2].sum())) for seed in range(3)]


def test_an_unknown_checkpoint_version_is_refused():
    buffer = io.BytesIO()
    torch.save({"checkpoint_version": 999}, buffer)
    buffer.seek(0)
    with pytest.raises(ValueError, match="version"):
        load_checkpoint(buffer)
