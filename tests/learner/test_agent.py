"""Alg. 1 as an object: ablations, warm-up, the one-in-ten rule, versions."""

import dataclasses

import numpy as np
import pytest
import torch

from learner import gate
from learner.agent import UnifiedAgent
from learner.config import make_config

OBS, ACT, T = 4, 2, 6


def small_agent(algorithm="unified", **overrides) -> UnifiedAgent:
    tiny = {"warmup_episodes": 2, "gate__num_masks": 8, "gate__rollouts_per_mask": 4,
            "sac__updates_per_episode": 10, "mb_policy__updates_per_episode": 2,
            "dynamics__updates_per_episode": 5} | overrides
    return UnifiedAgent(make_config("cpu-small", algorithm=algorithm, obs_dim=OBS, act_dim=ACT,
                                    episode_steps=T, device="cpu", **tiny))


def fake_episode(rng: np.random.Generator):
    return rng.normal(size=(T + 1, OBS)), rng.uniform(-1, 1, (T, ACT)), rng.normal(size=T)


def run(agent: UnifiedAgent, episodes: int, seed=0):
    rng = np.random.default_rng(seed)
    records, stats = [], {}
    for _ in range(episodes):
        records.append(agent.decide())
        stats = agent.observe_episode(*fake_episode(rng))
    return records, stats


@pytest.mark.parametrize("algorithm", ["unified", "sac", "mbrl"])
def test_warm_up_runs_mf_and_trains_nothing_until_enough_episodes(algorithm):
    agent = small_agent(algorithm, warmup_episodes=3)
    records, stats = run(agent, 2)
    assert [(r.choice, r.reason) for r in records] == [("mf", "warm-up")] * 2
    assert agent.versions == {"mf": 0, "mb": 0}
    assert set(stats) == {"buffer/episodes"}
    (record,), _ = run(agent, 1, seed=1)
    assert (record.choice, record.reason) == ("mf", "warm-up")  # the third still warms up ...
    assert agent.learning_started  # ... and its arrival starts learning
    assert agent.versions == {"mf": int(algorithm != "mbrl"), "mb": int(algorithm != "sac")}


@pytest.mark.parametrize(
    ("algorithm", "choice", "trained"),
    [("sac", "mf", {"sac/"}), ("mbrl", "mb", {"model/", "mb/"}),
     ("unified", None, {"sac/", "model/", "mb/"})],
)
def test_ablations_use_the_same_code_with_fixed_choices(algorithm, choice, trained):
    agent = small_agent(algorithm)
    records, stats = run(agent, 5)
    after = records[agent.config.warmup_episodes :]
    if choice is not None:
        assert all((r.choice, r.reason) == (choice, "ablation") for r in after)
    else:
        assert all(r.reason in ("eps", "forced-mf", "model-check") and len(r.pairs) == 8
                   for r in after)
    prefixes = {k.split("/")[0] + "/" for k in stats if not k.startswith(("time/", "buffer/"))}
    assert prefixes == trained
    assert (agent.model is None) == (algorithm == "sac")
    if algorithm == "sac":
        with pytest.raises(ValueError):
            agent.policy("mb")


def test_versions_count_policy_updates():
    agent = small_agent()
    run(agent, 5)  # learning starts with the second episode: 4 training periods
    assert agent.versions == {"mf": 4, "mb": 4}


def test_unified_forces_mf_at_least_once_in_ten(monkeypatch):
    agent = small_agent(gate__posterior_check=False)  # the fake MF returns beat the fake J(MF)
    k = agent.config.gate.num_masks
    monkeypatch.setattr(gate, "estimate_returns",
                        lambda *a, **kw: (torch.ones(k), torch.zeros(k)))  # MB always dominates
    records, _ = run(agent, 25)
    choices = [r.choice for r in records[agent.config.warmup_episodes :]]
    assert choices == (["mb"] * 9 + ["mf"]) * 2 + ["mb"] * 3
    assert {r.reason for r in records if r.choice == "mf"} >= {"forced-mf"}


@pytest.mark.parametrize("kind", ["mf", "mb"])
def test_act_gives_actions_in_range(kind):
    agent = small_agent()
    obs = np.random.default_rng(0).normal(size=OBS)
    action = agent.act(obs, kind)
    assert action.shape == (ACT,) and np.all(np.abs(action) <= 1)
    np.testing.assert_array_equal(agent.act(obs, kind, True), agent.act(obs, kind, True))
    with pytest.raises(ValueError):
        agent.policy("other")


def test_gate_and_policy_training_use_the_episode_length_as_horizon():
    agent = small_agent()
    assert agent.resolved_config.gate.horizon == T
    assert agent.mb.config.horizon == T
    record = run(agent, 3)[0][-1]
    assert record.horizon == T


def test_the_posterior_check_uses_the_real_returns_of_mf_episodes_only(monkeypatch):
    # Every mask favours MB (estimates MB 1, MF 0), but the MF episodes really scored 6 (T
    # rewards of 1): with the check, MF keeps running ("model-check"); without it, MB runs.
    k = 8
    monkeypatch.setattr(gate, "estimate_returns",
                        lambda *a, **kw: (torch.ones(k), torch.zeros(k)))
    obs, actions = np.zeros((T + 1, OBS)), np.zeros((T, ACT))
    for check in (True, False):
        agent = small_agent(gate__posterior_check=check, gate__posterior_check_episodes=2)
        agent.observe_episode(obs, actions, np.ones(T), policy_kind="mf")
        agent.observe_episode(obs, actions, np.full(T, -50.0), policy_kind="mb")  # not MF's
        assert list(agent.recent_mf_returns) == [6.0]  # one MF episode: too few to judge
        record = agent.decide()
        assert (record.choice, record.reason) == ("mb", "eps")
        agent.observe_episode(obs, actions, np.ones(T), policy_kind="mf")
        record = agent.decide()
        assert (record.choice, record.reason) == (("mf", "model-check") if check else ("mb", "eps"))
        assert record.eps_choice == "mb"


def test_prior_episodes_fill_the_buffer_but_neither_count_nor_shorten_the_warm_up():
    agent = small_agent("sac", warmup_episodes=2)
    rng = np.random.default_rng(7)
    prior = [fake_episode(rng) for _ in range(3)]
    assert agent.add_prior_episodes(prior) == 3
    assert (len(agent.buffer), agent.episodes_seen, agent.prior_episodes) == (3, 0, 3)
    assert np.allclose(agent.buffer.all_trajectories().obs[1].numpy(), prior[1][0])
    assert not agent.learning_started  # three episodes in the buffer, none of the run's own
    records, stats = run(agent, 2)
    assert [r.reason for r in records] == ["warm-up", "warm-up"]
    assert "sac/critic_loss" in stats  # learning starts with the run's second episode
    assert (len(agent.buffer), agent.episodes_seen) == (5, 2)

    restored = small_agent("sac", warmup_episodes=2)
    restored.load_state_dict(agent.state_dict())
    assert (restored.prior_episodes, restored.episodes_seen, len(restored.buffer)) == (3, 2, 5)

    with pytest.raises(ValueError, match="before the run's first episode"):
        agent.add_prior_episodes(prior[:1])


def test_valve_symmetry_gives_sac_each_episode_turned_both_ways_and_nothing_else():
    from dclaw import task

    config = make_config("cpu-small", algorithm="unified", device="cpu", valve_symmetry=True,
                         episode_steps=T, warmup_episodes=5)
    agent = UnifiedAgent(config)
    rng = np.random.default_rng(4)
    episodes = [(task.observation(np.tile(task.RESET_POSE, (T + 1, 1)), rng.uniform(0, 2, T + 1),
                                  rng.uniform(-1, 1, (T + 1, 9))),
                 rng.uniform(-1, 1, (T, 9)), rng.normal(-10, 1, T)) for _ in range(3)]
    agent.add_prior_episodes(episodes[:1])
    for obs, actions, rewards in episodes[1:]:
        agent.observe_episode(obs, actions, rewards)
    # The model, the MB policy and the gate see the three episodes as they were ...
    assert len(agent.buffer) == 3 and len(agent.buffer.initial_observations()) == 3
    # ... and SAC also sees each turned by +120 and -120 degrees.
    assert len(agent.turned) == 6
    turned_obs, turned_rewards = task.turn_valve(episodes[2][0], episodes[2][2], -1)
    stored = agent.turned.all_trajectories()
    assert np.allclose(stored.obs[5].numpy(), turned_obs, atol=1e-6)
    assert np.allclose(stored.rewards[5].numpy(), turned_rewards, atol=1e-5)

    # A batch is uniform over all nine episodes' transitions: a third of it the run's own.
    batch = agent._sac_batch(30)
    own = agent.buffer.all_trajectories().obs[:, :-1].reshape(-1, task.OBS_DIM)
    is_own = (batch.obs[:, None, :] == own[None]).all(-1).any(-1)
    assert batch.obs.shape == (30, task.OBS_DIM) and int(is_own.sum()) == 10

    quarter = UnifiedAgent(dataclasses.replace(config, valve_symmetry_share=0.25))
    quarter.load_state_dict(agent.state_dict())
    batch = quarter._sac_batch(32)  # a set share of the batch turned, whatever the counts
    assert int((batch.obs[:, None, :] == own[None]).all(-1).any(-1).sum()) == 24
    with pytest.raises(ValueError, match=r"valve_symmetry_share must lie in \[0, 1\]"):
        dataclasses.replace(config, valve_symmetry_share=1.5)

    restored = UnifiedAgent(config)  # the turned copies are rebuilt from the checkpoint
    restored.load_state_dict(agent.state_dict())
    again = restored.turned.all_trajectories()
    assert len(restored.turned) == 6 and torch.equal(again.obs, stored.obs)

    with pytest.raises(ValueError, match="valve_symmetry needs D'Claw's 21 observations"):
        small_agent("sac", valve_symmetry=True)
