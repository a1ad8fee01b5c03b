"""SAC with the changes of Sec. 3.2: no entropy term in the Q target, layer-normalised critics."""

import pytest
import torch

from learner.buffer import TransitionBatch
from learner.config import SACConfig
from learner.sac import SAC, actor_loss, critic_loss, polyak_update, q_target, temperature_loss

OBS, ACT = 4, 2


def batch(n=16, dones=None) -> TransitionBatch:
    return TransitionBatch(
        obs=torch.randn(n, OBS),
        actions=torch.rand(n, ACT) * 2 - 1,
        rewards=torch.randn(n),
        next_obs=torch.randn(n, OBS),
        dones=torch.zeros(n) if dones is None else dones,
    )


def small_sac(**overrides) -> SAC:
    cfg = SACConfig(actor_hidden=(16, 16), critic_hidden=(16, 16), **overrides)
    return SAC(OBS, ACT, cfg, gamma=0.9)


def fix_next_sample(sac, monkeypatch, b, next_action, log_prob):
    """The actor's next-state sample pinned to (next_action, log_prob); returns the target
    critics' min Q at it."""
    monkeypatch.setattr(
        sac.actor, "sample",
        lambda obs, deterministic=False: (next_action, torch.full((len(b.rewards),), log_prob)))
    with torch.no_grad():
        return torch.min(sac.q1_target(b.next_obs, next_action),
                         sac.q2_target(b.next_obs, next_action))


@pytest.mark.parametrize("done", [0.0, 1.0])
def test_q_target_is_reward_plus_discounted_min_target_q_without_entropy(done, monkeypatch):
    sac = small_sac()
    b = batch(dones=torch.full((16,), done))
    # A huge log-probability: if any entropy term were in the target it would show.
    q_min = fix_next_sample(sac, monkeypatch, b, torch.rand(16, ACT) * 2 - 1, 1e3)
    expected = b.rewards + 0.9 * (1 - done) * q_min
    torch.testing.assert_close(sac.compute_q_target(b), expected)


def test_standard_sac_target_is_available_as_an_option(monkeypatch):
    sac = small_sac(entropy_in_q_target=True)
    b = batch()
    q_min = fix_next_sample(sac, monkeypatch, b, torch.zeros(16, ACT), 5.0)
    torch.testing.assert_close(sac.compute_q_target(b), b.rewards + 0.9 * (q_min - 0.2 * 5.0))


def test_reward_scale_multiplies_rewards_and_alpha_together(monkeypatch):
    sac = small_sac(entropy_in_q_target=True, reward_scale=0.1)
    b = batch()
    q_min = fix_next_sample(sac, monkeypatch, b, torch.zeros(16, ACT), 5.0)
    torch.testing.assert_close(sac.compute_q_target(b),
                               0.1 * b.rewards + 0.9 * (q_min - 0.1 * 0.2 * 5.0))
    assert sac.alpha == pytest.approx(0.2)  # reported in the paper's units


def test_the_dclaw_presets_scale_rewards_and_toy_configs_may_not():
    from learner.config import make_config

    assert make_config("dclaw-paper").sac.reward_scale == 0.1
    assert make_config("cpu-small").sac.reward_scale == 0.1
    assert SACConfig().reward_scale == 1.0
    with pytest.raises(ValueError, match="reward_scale must be positive"):
        make_config("cpu-small", sac__reward_scale=0.0)


def test_scaled_actor_loss_weighs_entropy_by_the_scaled_alpha(monkeypatch):
    """With reward_scale c the actor minimises c*alpha*log pi - Q_c, Q_c ~ c*Q: the same
    policy gradient direction as alpha*log pi - Q at scale 1."""
    seen = {}
    import learner.sac as sac_module

    def spy(q_min, log_prob, alpha):
        seen["alpha"] = float(alpha)
        return actor_loss(q_min, log_prob, alpha)

    monkeypatch.setattr(sac_module, "actor_loss", spy)
    small_sac(reward_scale=0.1).update(batch())
    assert seen["alpha"] == pytest.approx(0.02)


def test_pure_losses():
    r, d, q = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([10.0, 10.0])
    torch.testing.assert_close(q_target(r, d, q, 0.5), torch.tensor([6.0, 2.0]))
    torch.testing.assert_close(
        critic_loss(torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([2.0])),
        torch.tensor(2.0),
    )
    torch.testing.assert_close(
        actor_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 1.0]), 0.5), torch.tensor(-2.0)
    )
    log_alpha = torch.tensor(0.0, requires_grad=True)
    temperature_loss(log_alpha, torch.tensor([1.0]), target_entropy=-2.0).backward()
    # Entropy -log pi = -1 is above the target -2: descending the loss lowers alpha.
    assert log_alpha.grad == pytest.approx(1.0)


def test_polyak_update():
    src, dst = [torch.tensor([1.0, 1.0])], [torch.tensor([0.0, 2.0])]
    polyak_update(src, dst, tau=0.25)
    torch.testing.assert_close(dst[0], torch.tensor([0.25, 1.75]))


def test_update_changes_critics_and_actor_and_moves_targets_slowly():
    sac = small_sac()
    before = {k: v.clone() for k, v in sac.q1.state_dict().items()}
    target_before = {k: v.clone() for k, v in sac.q1_target.state_dict().items()}
    actor_before = [p.clone() for p in sac.actor.parameters()]
    stats = sac.update(batch())
    assert all(isinstance(v, float) for v in stats.to_dict().values())
    changed = [not torch.equal(before[k], v) for k, v in sac.q1.state_dict().items()]
    assert any(changed)
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, sac.actor.parameters(),
                                                      strict=True))
    for k, v in sac.q1_target.state_dict().items():
        expected = (1 - sac.config.tau) * target_before[k] + sac.config.tau * sac.q1.state_dict()[k]
        torch.testing.assert_close(v, expected)


@pytest.mark.parametrize("auto", [False, True])
def test_alpha_is_fixed_unless_tuned(auto):
    sac = small_sac(auto_entropy=auto, alpha_lr=0.1)
    for _ in range(5):
        sac.update(batch())
    assert (sac.alpha != pytest.approx(0.2)) == auto
