"""Evaluates the final policies of `dclaw train` runs on the simulator.

For each run directory: the MF (SAC) policy and, where there is one, the MB policy, each for a
few episodes with deterministic (mean) actions and with sampled actions as in training. Prints
return, success at the last step, and how far the valve turned (the task needs pi).

    .venv/bin/python -m benchmarks.evaluate_run RUN_DIR [RUN_DIR ...] [--episodes 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium
import numpy as np

import sim
from learner.checkpoint import load_checkpoint


def evaluate(env, agent, kind: str, deterministic: bool, episodes: int) -> dict[str, float]:
    returns, successes, travel = [], [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + i)
        total, angles, info = 0.0, [], {}
        for _ in range(40):
            obs, reward, _, _, info = env.step(agent.act(obs, kind, deterministic=deterministic))
            total += reward
            angles.append(abs(np.arctan2(obs[10], obs[9])))
        returns.append(total)
        successes.append(info["success"])
        travel.append(max(angles))
    return {"return": float(np.mean(returns)), "success": float(np.mean(successes)),
            "valve_travel": float(np.mean(travel))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    env = gymnasium.make(sim.ENV_ID)
    for run in args.runs:
        agent = load_checkpoint(run / "checkpoint.pt", device="cpu", restore_rng=False)
        kinds = ["mf", "mb"] if agent.mb is not None else ["mf"]
        for kind in kinds:
            for det in (True, False):
                r = evaluate(env, agent, kind, det, args.episodes)
                mode = "mean action" if det else "sampled"
                print(f"{run.name:14s} {kind} {mode:11s} return {r['return']:7.1f}  "
                      f"success {100 * r['success']:3.0f}%  "
                      f"valve travel {r['valve_travel']:.2f} rad")


if __name__ == "__main__":
    main()
