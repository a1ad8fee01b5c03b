"""Times the EPS gate's `decide` at K=50, M=10, T=40 with the dclaw-paper network sizes.

Randomly initialised networks: the cost does not depend on the weights. Prints the median of
several calls for each compute dtype, and a breakdown of where one call spends its time
(`decide` runs the model and the policies in their folded forms; the breakdown times both
forms).

    python -m benchmarks.gate_latency [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from learner.config import make_config
from learner.dynamics import DynamicsModel
from learner.gate import decide
from learner.imagination import imagine
from learner.networks import TanhGaussianPolicy


def build(config, device):
    model = DynamicsModel(config.obs_dim, config.act_dim, config.dynamics).to(device).eval()
    mb = TanhGaussianPolicy(config.obs_dim, config.act_dim, config.mb_policy.hidden).to(device)
    mf = TanhGaussianPolicy(config.obs_dim, config.act_dim, config.sac.actor_hidden).to(device)
    init = torch.zeros(8, config.obs_dim, device=device)
    return model, mb, mf, init


def time_calls(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def breakdown(config, model, mb, mf, init, repeats: int) -> None:
    """Seconds per gate-sized pass of each part alone (K*M rows, T steps)."""
    gate = config.gate
    rows = gate.num_masks * gate.rollouts_per_mask
    obs = torch.zeros(rows, config.obs_dim)
    act = torch.zeros(rows, config.act_dim)
    masks = model.sample_masks(gate.num_masks).repeat_interleave(gate.rollouts_per_mask)

    def model_only(dynamics):
        def run():
            with torch.inference_mode():
                state = dynamics.reset(rows, masks)
                for _ in range(gate.horizon):
                    _, _, state = dynamics.sample(state, obs, act)
        return run

    def policy_only(policy):
        def run():
            with torch.inference_mode():
                for _ in range(gate.horizon):
                    policy.sample(obs)
        return run

    def one_imagine(policy):
        def run():
            with torch.inference_mode():
                imagine(model, policy, obs, masks, gate.horizon)
        return run

    for name, fn in [
        ("model alone (x2 in a decide)", model_only(model)),
        ("model alone, folded", model_only(model.folded())),
        ("MB policy alone", policy_only(mb)),
        ("MB policy alone, sigmoid-folded", policy_only(mb.folded())),
        ("MF policy alone", policy_only(mf)),
        ("MF policy alone, sigmoid-folded", policy_only(mf.folded())),
        ("imagine with MB policy", one_imagine(mb)),
        ("imagine with MB policy, folded", one_imagine(mb.folded())),
        ("imagine with MF policy", one_imagine(mf)),
    ]:
        print(f"  {name:32s} {statistics.median(time_calls(fn, repeats)):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for dtype in ("float32", "bfloat16"):
        config = make_config("dclaw-paper", gate__compute_dtype=dtype, gate__horizon=40)
        model, mb, mf, init = build(config, args.device)
        times = time_calls(partial(decide, model, mb, mf, init, config.gate), args.repeats)
        g = config.gate
        print(
            f"decide K={g.num_masks} M={g.rollouts_per_mask} T={g.horizon} {dtype:8s} "
            f"on {args.device}, {torch.get_num_threads()} threads: median "
            f"{statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f})"
        )
    print("breakdown (float32):")
    config = make_config("dclaw-paper", gate__horizon=40)
    breakdown(config, *build(config, args.device), repeats=max(3, args.repeats // 2))


if __name__ == "__main__":
    main()
