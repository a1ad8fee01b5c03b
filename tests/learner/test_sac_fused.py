"""The fused SAC step (learner/sac_fused.py) against the autograd step it replaces."""

import copy

import numpy as np
import pytest
import torch

from learner.buffer import EpisodeBuffer
from learner.config import make_config
from learner.sac import SAC

OBS, ACT, T = 21, 9, 40


@pytest.mark.parametrize("auto_entropy,entropy_in_target,sigma_max",
                         [(False, False, None), (True, True, 0.5)])
def test_fused_step_matches_autograd(auto_entropy, entropy_in_target, sigma_max):
    cfg = make_config("cpu-small", algorithm="sac")
    sac_cfg = cfg.sac.__class__(**{**cfg.sac.__dict__, "auto_entropy": auto_entropy,
                                   "entropy_in_q_target": entropy_in_target,
                                   "sigma_max": sigma_max})
    torch.manual_seed(0)
    reference = SAC(OBS, ACT, sac_cfg, cfg.gamma)
    fused = copy.deepcopy(reference)
    fused._fused = type(reference._fused)(fused)  # bound to the copy's own modules
    rng = np.random.default_rng(0)
    buffer = EpisodeBuffer(OBS, ACT, T, torch.device("cpu"))
    for _ in range(20):
        buffer.add_episode(rng.normal(size=(T + 1, OBS)), rng.uniform(-1, 1, (T, ACT)),
                           rng.normal(size=T))
    gen = torch.Generator().manual_seed(0)
    for step in range(4):
        batch = buffer.sample_transitions(64, gen)
        torch.manual_seed(step)
        want = reference.update_autograd(batch)
        torch.manual_seed(step)
        got = fused.update(batch)
        assert got.critic_loss == pytest.approx(want.critic_loss, rel=1e-4)
        assert got.actor_loss == pytest.approx(want.actor_loss, rel=1e-4, abs=1e-6)
        assert got.entropy == pytest.approx(want.entropy, rel=1e-4)
    # Adam scales each step to ~lr whatever the gradient, so a rounding-size gradient moves a
    # weight by up to lr = 3e-4: the bound is a third of that, after four steps.
    for name in ("actor", "q1", "q2", "q1_target", "q2_target"):
        for (key, a), b in zip(getattr(reference, name).named_parameters(),
                               getattr(fused, name).parameters(), strict=True):
            assert (a - b).abs().max() < 1e-4, (f"{name}.{key}", (a - b).abs().max())
    assert fused.log_alpha.item() == pytest.approx(reference.log_alpha.item(), abs=1e-6)
