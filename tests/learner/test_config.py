"""The presets are data: the paper's DClaw row and a CPU preset of the same structure."""

import pytest

from learner.config import (
    PRESETS,
    AgentConfig,
    config_from_dict,
    config_to_dict,
    make_config,
)


def test_dclaw_paper_preset_follows_table_2_and_design():
    c = PRESETS["dclaw-paper"]
    assert (c.gate.num_masks, c.gate.rollouts_per_mask, c.episode_steps) == (50, 10, 40)
    assert c.mb_policy.training == "full_trajectory"
    assert c.mb_policy.alpha == c.sac.alpha == 0.2
    assert not c.mb_policy.auto_entropy and not c.sac.auto_entropy
    assert c.dynamics.eta == 200 and c.dynamics.batch_trajectories == 100
    assert c.sac.sigma_max is None and c.mb_policy.sigma_max is None
    assert c.sac.critic_layer_norm and not c.sac.entropy_in_q_target
    # "Three layers" with activations between them: two hidden layers and the output.
    assert c.sac.actor_hidden == c.sac.critic_hidden == (256, 256)
    assert c.mb_policy.hidden == (1024, 1024)
    assert c.mb_policy.value_hidden == (256, 256)
    assert c.gate.mf_every == 10
    assert not c.gate.posterior_check  # not in the paper; on only in cpu-small


def test_cpu_small_is_smaller_with_the_same_structure():
    small, paper = PRESETS["cpu-small"], PRESETS["dclaw-paper"]
    assert max(small.mb_policy.hidden) < max(paper.mb_policy.hidden)
    assert small.dynamics.lstm_size < paper.dynamics.lstm_size
    assert small.mb_policy.updates_per_episode < paper.mb_policy.updates_per_episode
    assert len(small.dynamics.hidden_sizes) == len(paper.dynamics.hidden_sizes) == 2
    assert small.mb_policy.training == paper.mb_policy.training
    assert small.gate.posterior_check  # its small model's bias (docs/BENCHMARKS.md)
    # SAC: the paper's networks, trained at UTD 4 with automatic alpha (docs/BENCHMARKS.md)
    assert small.sac.actor_hidden == paper.sac.actor_hidden
    assert small.sac.updates_per_episode == 4 * small.episode_steps
    assert small.sac.auto_entropy and not paper.sac.auto_entropy


def test_make_config_overrides_top_level_and_nested_fields():
    c = make_config("cpu-small", algorithm="sac", sac__batch_size=7, gate__num_masks=3)
    assert (c.algorithm, c.sac.batch_size, c.gate.num_masks) == ("sac", 7, 3)
    assert c.sac.actor_hidden == PRESETS["cpu-small"].sac.actor_hidden  # rest kept


@pytest.mark.parametrize("bad", [{"preset": "nope"}, {"algorithm": "ppo"}])
def test_bad_configs_are_refused(bad):
    with pytest.raises((KeyError, ValueError)):
        make_config(bad.pop("preset", "cpu-small"), **bad)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_config_round_trips_through_a_plain_dict(preset):
    config = make_config(preset, gate__horizon=12)
    again = config_from_dict(config_to_dict(config))
    assert isinstance(again, AgentConfig) and again == config
