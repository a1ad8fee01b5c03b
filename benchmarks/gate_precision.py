"""Does running the EPS gate in bfloat16 change its decisions? Compared on a trained learner.

Loads a `dclaw train` checkpoint and estimates Ĵ(MB|wᵢ) − Ĵ(MF|wᵢ) for K masks many times in
float32 and in bfloat16 (fresh masks each call: the gate itself is random), then compares the
distributions: how often MB would be chosen, and the margins. Also times both.

    .venv/bin/python -m benchmarks.gate_precision RUN_DIR/checkpoint.pt [--calls 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from learner.checkpoint import load_checkpoint
from learner.gate import estimate_returns


def sample(agent, dtype: str, calls: int, seed: int):
    config = dataclasses.replace(
        agent.config.gate, compute_dtype=dtype,
        horizon=agent.config.gate.horizon or agent.config.episode_steps,
    )
    gen = torch.Generator().manual_seed(seed)
    init = agent.buffer.initial_observations()
    diffs, seconds = [], []
    for _ in range(calls):
        start = time.perf_counter()
        j_mb, j_mf = estimate_returns(agent.model, agent.mb.policy, agent.sac.actor, init,
                                      config, gen)
        seconds.append(time.perf_counter() - start)
        diffs.append((j_mb - j_mf).numpy())
    return np.stack(diffs), float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    agent = load_checkpoint(args.checkpoint, device="cpu")
    print(f"{args.checkpoint}: {agent.episodes_seen} episodes, K={agent.config.gate.num_masks}, "
          f"M={agent.config.gate.rollouts_per_mask}, {args.calls} calls each")
    for name, dtype, seed in (("float32", "float32", 1), ("float32 (2nd)", "float32", 2),
                              ("bfloat16", "bfloat16", 1)):
        d, sec = sample(agent, dtype, args.calls, seed)
        mb_rate = float((d > 0).all(axis=1).mean())
        print(f"  {name:14s} MB chosen {100 * mb_rate:5.1f}%  mean diff {d.mean():8.2f}  "
              f"min diff (mean over calls) {d.min(axis=1).mean():8.2f}  "
              f"masks favouring MB {100 * (d > 0).mean():5.1f}%  median {sec:.3f} s")


if __name__ == "__main__":
    main()
