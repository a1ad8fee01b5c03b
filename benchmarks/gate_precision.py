"""Does running the EPS gate in bfloat16 change its decisions? Compared on a trained learner.

Loads a `dclaw train` checkpoint and, for each of `--calls` gate calls, estimates the K per-mask
differences d_i = Ĵ(MB|wᵢ) − Ĵ(MF|wᵢ) with the same K masks and the same start states: in
float32, in float32 again with other rollout noise, and in bfloat16 with the first run's noise
seed; then float32 and bfloat16 again with the model and the policies unfolded (the model under
autocast, the policies' tanh form) rather than in the folded forms `decide` runs
(`FoldedDynamics`, `SigmoidFoldedPolicy`). The gate is itself random (M rollouts
per mask), so the question is whether bfloat16 (or the fold) moves the estimates more than the
gate's own rollout noise does: the second float32 run is that yardstick. Printed: the decisions
(MB only if every d_i > 0), how often the per-mask signs agree, the correlation and mean gap of
the d_i against the first float32 run, and the median time per call.

    .venv/bin/python -m benchmarks.gate_precision RUN_DIR/checkpoint.pt [--calls 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from learner import gate as gate_module
from learner.checkpoint import load_checkpoint
from learner.gate import estimate_returns

# (name, compute dtype, noise seed, model and policies folded as `decide` runs them)
VARIANTS = (("float32", "float32", 0, True), ("float32, other noise", "float32", 1, True),
            ("bfloat16", "bfloat16", 0, True), ("float32, unfolded", "float32", 0, False),
            ("bfloat16, unfolded", "bfloat16", 0, False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    agent = load_checkpoint(args.checkpoint, device="cpu")
    gate = agent.config.gate
    horizon = gate.horizon or agent.config.episode_steps
    init = agent.buffer.initial_observations()
    print(f"{args.checkpoint}: {agent.episodes_seen} episodes, K={gate.num_masks}, "
          f"M={gate.rollouts_per_mask}, T={horizon}, {args.calls} calls, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    diffs = {name: [] for name, *_ in VARIANTS}
    seconds = {name: [] for name, *_ in VARIANTS}
    folded = gate_module._folded
    for call in range(args.calls):
        for name, dtype, noise, fold in VARIANTS:
            gate_module._folded = folded if fold else (lambda net, dtype: net)
            config = dataclasses.replace(gate, compute_dtype=dtype, horizon=horizon)
            masks_and_starts = torch.Generator().manual_seed(1000 + call)
            torch.manual_seed(2 * call + noise)  # the rollouts' action and model noise
            start = time.perf_counter()
            j_mb, j_mf = estimate_returns(agent.model, agent.mb.policy, agent.sac.actor, init,
                                          config, masks_and_starts)
            seconds[name].append(time.perf_counter() - start)
            diffs[name].append((j_mb - j_mf).numpy())
    gate_module._folded = folded
    ref = np.stack(diffs["float32"])
    for name, *_ in VARIANTS:
        d = np.stack(diffs[name])
        mb = (d > 0).all(axis=1)
        line = (f"  {name:22s} MB chosen {100 * mb.mean():5.1f}%  masks favouring MB "
                f"{100 * (d > 0).mean():5.1f}%  mean d {d.mean():8.2f}  "
                f"median {np.median(seconds[name]):.3f} s")
        if name != "float32":
            same_choice = (mb == (ref > 0).all(axis=1)).mean()
            same_sign = ((d > 0) == (ref > 0)).mean()
            corr = np.corrcoef(d.ravel(), ref.ravel())[0, 1]
            gap = np.abs(d - ref).mean()
            line += (f"\n  {'':22s} against float32: same decision {100 * same_choice:5.1f}%, "
                     f"same per-mask sign {100 * same_sign:5.1f}%, correlation {corr:.4f}, "
                     f"mean |gap| {gap:.3f}")
        print(line)


if __name__ == "__main__":
    main()
