"""Imagined rollouts and the model-based policy's two training methods (Sec. 3.2)."""

import pytest
import torch

from learner.buffer import EpisodeBuffer
from learner.config import DynamicsConfig, MBPolicyConfig
from learner.dynamics import DynamicsModel
from learner.imagination import imagine
from learner.mb_policy import (
    MBPolicyLearner,
    dreamer_actor_loss,
    full_trajectory_loss,
    lambda_returns,
)
from learner.networks import TanhGaussianPolicy

OBS, ACT, T = 3, 2, 6
DYN = DynamicsConfig(input_size=16, lstm_size=16, hidden_sizes=(16, 16))


def random_buffer(n=6) -> EpisodeBuffer:
    buffer = EpisodeBuffer(OBS, ACT, T)
    for _ in range(n):
        buffer.add_episode(torch.randn(T + 1, OBS), torch.rand(T, ACT) * 2 - 1, torch.randn(T))
    return buffer


def fitted_model(buffer) -> DynamicsModel:
    model = DynamicsModel(OBS, ACT, DYN)
    model.fit_normaliser(buffer.all_trajectories())
    return model


def test_imagine_records_a_consistent_rollout_with_gradients_to_the_policy():
    buffer = random_buffer()
    model, policy = fitted_model(buffer), TanhGaussianPolicy(OBS, ACT, (8,))
    out = imagine(model, policy, torch.randn(5, OBS), model.sample_masks(5), T, record=True)
    assert out.rewards.shape == out.log_probs.shape == (5, T)
    assert out.obs.shape == (5, T + 1, OBS)
    torch.testing.assert_close(out.returns, out.rewards.sum(1))
    out.returns.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.trunk.parameters())


def test_pure_losses():
    returns, log_probs = torch.tensor([1.0, 3.0]), torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    torch.testing.assert_close(full_trajectory_loss(returns, log_probs, 0.2),
                               torch.tensor(-2.0 + 0.2 * 1.0))
    torch.testing.assert_close(dreamer_actor_loss(returns, log_probs, 0.5),
                               torch.tensor(-2.0 + 0.5 * 0.5))


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_lambda_returns_match_their_definition(lam):
    rewards, values = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    g = 0.9
    g2 = 3 + g * 40
    g1 = 2 + g * ((1 - lam) * 30 + lam * g2)
    g0 = 1 + g * ((1 - lam) * 20 + lam * g1)
    torch.testing.assert_close(lambda_returns(rewards, values, g, lam),
                               torch.tensor([[g0, g1, g2]]))


@pytest.mark.parametrize("training", ["full_trajectory", "dreamer"])
def test_an_update_changes_the_policy_but_not_the_model(training):
    buffer = random_buffer()
    model = fitted_model(buffer)
    config = MBPolicyConfig(hidden=(16, 16), training=training, num_masks=2, rollouts_per_mask=3,
                            horizon=T, dreamer_horizon=4, value_hidden=(8, 8))
    learner = MBPolicyLearner(OBS, ACT, config, gamma=0.99)
    model_before = {k: v.clone() for k, v in model.state_dict().items()}
    policy_before = [p.clone() for p in learner.policy.parameters()]
    stats = learner.update(model, buffer, torch.Generator().manual_seed(0))
    assert all(isinstance(v, float) for v in stats.to_dict().values())
    assert any(not torch.equal(a, b)
               for a, b in zip(policy_before, learner.policy.parameters(), strict=True))
    assert all(torch.equal(model_before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # unfrozen afterwards
    assert (stats.value_loss > 0) == (training == "dreamer")


def test_full_trajectory_gradient_is_clipped():
    buffer = random_buffer()
    config = MBPolicyConfig(hidden=(16,), num_masks=2, rollouts_per_mask=2, horizon=T,
                            max_grad_norm=1e-3, lr=1.0)
    learner = MBPolicyLearner(OBS, ACT, config, gamma=0.99)
    optimiser_steps = []
    learner.optim.step = lambda: optimiser_steps.append(
        torch.sqrt(sum(p.grad.pow(2).sum() for p in learner.policy.parameters())).item()
    )
    stats = learner.update(fitted_model(buffer), buffer)
    assert stats.grad_norm > 1e-3
    assert optimiser_steps[0] == pytest.approx(1e-3, rel=1e-3)
