"""The Tanh-Gaussian policy (A.2.2) and the critics (A.2.3, Sec. 3.2)."""

import pytest
import torch
from torch import nn
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from learner.networks import QNetwork, TanhGaussianPolicy, ValueNetwork


@pytest.mark.parametrize("sigma_max", [None, 0.3])
def test_log_prob_includes_the_tanh_correction(sigma_max):
    policy = TanhGaussianPolicy(4, 3, (16, 16), sigma_max=sigma_max)
    obs = torch.randn(64, 4)
    action, log_prob = policy.sample(obs)
    mean, std = policy.distribution(obs)
    reference = TransformedDistribution(Normal(mean, std), [TanhTransform(cache_size=1)])
    expected = reference.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    torch.testing.assert_close(log_prob, expected, atol=2e-3, rtol=1e-4)


def test_action_scale_and_offset_map_tanh_samples_and_shift_the_density():
    plain = TanhGaussianPolicy(4, 2, (8,))
    scaled = TanhGaussianPolicy(4, 2, (8,), action_scale=[2.0, 0.5], action_offset=[1.0, 0.0])
    scaled.load_state_dict({**plain.state_dict(), "action_scale": torch.tensor([2.0, 0.5]),
                            "action_offset": torch.tensor([1.0, 0.0])})
    obs, noise = torch.randn(5, 4), torch.randn(5, 2)
    a, lp = plain.sample(obs, noise=noise)
    b, lq = scaled.sample(obs, noise=noise)
    torch.testing.assert_close(b, torch.tensor([1.0, 0.0]) + torch.tensor([2.0, 0.5]) * a)
    torch.testing.assert_close(lq, lp - torch.log(torch.tensor(2.0 * 0.5)))


def test_samples_lie_in_the_action_range_and_deterministic_is_tanh_of_mean():
    policy = TanhGaussianPolicy(4, 3, (16,))
    with torch.no_grad():
        policy.mean_head.bias.fill_(5.0)
    obs = torch.randn(256, 4)
    action, _ = policy.sample(obs)
    assert action.abs().max() <= 1.0
    mean, _ = policy.distribution(obs)
    torch.testing.assert_close(policy.sample(obs, deterministic=True)[0], torch.tanh(mean))
    torch.testing.assert_close(policy(obs), torch.tanh(mean))


def test_sigma_max_bounds_the_std_and_softplus_does_not():
    bounded = TanhGaussianPolicy(4, 3, (16,), sigma_max=0.1)
    free = TanhGaussianPolicy(4, 3, (16,))
    with torch.no_grad():
        for p in (bounded, free):
            p.std_head.bias.fill_(10.0)
    obs = torch.randn(32, 4)
    assert bounded.distribution(obs)[1].max() <= 0.1 + bounded.min_std
    assert free.distribution(obs)[1].min() > 5.0


def test_policy_architecture_is_tanh_mlp_with_two_heads():
    policy = TanhGaussianPolicy(21, 9, (256, 256, 256))
    linears = [m for m in policy.trunk if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [256, 256, 256]
    assert sum(isinstance(m, nn.Tanh) for m in policy.trunk) == 3
    assert policy.mean_head.out_features == policy.std_head.out_features == 9


@pytest.mark.parametrize("layer_norm", [True, False])
def test_q_network_layer_norm_is_optional_and_output_is_one_value(layer_norm):
    q = QNetwork(5, 2, (32, 32, 32), layer_norm=layer_norm)
    n_norms = sum(isinstance(m, nn.LayerNorm) for m in q.modules())
    assert n_norms == (3 if layer_norm else 0)
    assert q(torch.randn(7, 5), torch.randn(7, 2)).shape == (7,)
    assert ValueNetwork(5, (32, 32, 32))(torch.randn(7, 5)).shape == (7,)


def test_weights_round_trip_through_get_and_load():
    a, b = TanhGaussianPolicy(4, 2, (8, 8)), TanhGaussianPolicy(4, 2, (8, 8))
    b.load_weights(a.get_weights())
    obs = torch.randn(3, 4)
    torch.testing.assert_close(a(obs), b(obs))


@pytest.mark.parametrize(("hidden", "sigma_max"), [((16, 16), None), ((8,), 0.3)])
def test_the_sigmoid_folded_policy_is_the_same_function(hidden, sigma_max):
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(5, 3, hidden, sigma_max=sigma_max, action_scale=[2.0, 0.5, 1.0],
                                action_offset=[0.1, 0.0, -0.2])
    with torch.no_grad():
        policy.obs_mean.copy_(torch.randn(5))
        policy.obs_std.copy_(torch.rand(5) + 0.5)
        for p in policy.parameters():
            p.mul_(3.0)  # past tanh's linear range, so saturation is checked too
    folded = policy.folded()
    obs, noise = torch.randn(64, 5) * 2, torch.randn(64, 3)
    with torch.no_grad():
        for deterministic in (False, True):
            expected = policy.sample(obs, deterministic=deterministic, noise=noise)
            got = folded.sample(obs, deterministic=deterministic, noise=noise)
            torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got[1], expected[1], atol=1e-4, rtol=1e-5)
        # In bfloat16: the same function to bfloat16's precision.
        action = policy.folded(torch.bfloat16).sample(obs, noise=noise)[0]
        torch.testing.assert_close(action, policy.sample(obs, noise=noise)[0], atol=0.1, rtol=0)
