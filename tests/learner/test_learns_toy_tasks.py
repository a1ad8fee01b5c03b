"""Each learner learns a cheap toy task (mbrl-lib `test_algorithms.py` style thresholds).

PointMass (learner_testkit): uniformly random actions score about -7.4 per 10-step episode, the
hand-written greedy policy about -0.35. Each test stays well under a minute on a 2-core CPU.
"""

import numpy as np
import pytest
from learner_testkit import PointMass, greedy_actor, mean_return, random_actor, run_episode

from learner.agent import UnifiedAgent
from learner.config import make_config

ENV = PointMass()
THRESHOLD = -1.5  # a fifth of the random policy's cost

pytestmark = pytest.mark.slow


def toy_config(algorithm: str, **overrides):
    return make_config(
        "cpu-small",
        algorithm=algorithm,
        obs_dim=ENV.obs_dim,
        act_dim=ENV.act_dim,
        episode_steps=ENV.steps,
        device="cpu",
        gamma=0.9,
        warmup_episodes=5,
        sac__actor_lr=1e-3,
        sac__critic_lr=1e-3,
        sac__tau=0.01,
        sac__updates_per_episode=20,
        sac__reward_scale=1.0,  # the D'Claw presets' 0.1 is for rewards ~-18 a step; here O(1)
        # eta = 200 is scaled for DClaw's 40 x 22-value trajectories; this task has 10 x 3.
        dynamics__eta=1.0,
        dynamics__dropout=0.05,
        dynamics__lr=3e-3,
        dynamics__batch_trajectories=16,
        dynamics__updates_per_episode=40,
        mb_policy__lr=1e-3,
        mb_policy__alpha=0.01,
        mb_policy__num_masks=4,
        mb_policy__rollouts_per_mask=8,
        mb_policy__updates_per_episode=10,
        **overrides,
    )


def train(agent: UnifiedAgent, episodes: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    choices = []
    for _ in range(episodes):
        kind = agent.decide().choice
        choices.append(kind)
        agent.observe_episode(*run_episode(ENV, lambda o, k=kind: agent.act(o, k), rng))
    return choices


def evaluate(agent: UnifiedAgent, kind: str) -> float:
    return mean_return(ENV, lambda o: agent.act(o, kind, deterministic=True), episodes=30)


def test_the_toy_task_separates_random_from_good_policies():
    assert mean_return(ENV, random_actor(ENV, np.random.default_rng(0)), 100) < 3 * THRESHOLD
    assert mean_return(ENV, greedy_actor, 100) > THRESHOLD / 3


def test_sac_learns_the_toy_task():
    agent = UnifiedAgent(toy_config("sac"))
    assert evaluate(agent, "mf") < THRESHOLD
    train(agent, 35)
    assert evaluate(agent, "mf") > THRESHOLD


def test_model_based_policy_learns_the_toy_task_on_its_learned_model():
    agent = UnifiedAgent(toy_config("mbrl"))
    assert evaluate(agent, "mb") < THRESHOLD
    choices = train(agent, 25)
    assert choices[5:] == ["mb"] * 20
    assert evaluate(agent, "mb") > THRESHOLD


def test_unified_rl_learns_the_toy_task_and_the_gate_uses_both_policies():
    agent = UnifiedAgent(toy_config("unified"))
    choices = train(agent, 30)
    assert "mf" in choices[5:] and "mb" in choices[5:]
    assert max(evaluate(agent, "mf"), evaluate(agent, "mb")) > THRESHOLD
