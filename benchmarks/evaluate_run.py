"""Evaluates the final policies of `dclaw train` runs on the simulator.

For each run directory: the MF (SAC) policy and, where there is one, the MB policy, each for a
few episodes with deterministic (mean) actions and with sampled actions as in training. Prints
return, success at the last step, and how far the valve turned (the task needs pi).

    .venv/bin/python -m benchmarks.evaluate_run RUN_DIR [RUN_DIR ...] [--episodes 5]

`--explore-from 10 20 30` adds, per step K, episodes that run the MF policy's mean action until
step K and uniformly random actions after it: how far past the policy's own reach a random
tail turns the valve (the best episode as well as the mean).
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


def explore_tail(env, agent, start: int, episodes: int) -> dict[str, float]:
    """Mean action until `start`, then uniform random actions; valve travel unwrapped."""
    rng = np.random.default_rng(0)
    returns, successes, travel = [], [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=20_000 + i)
        total, angle, turned, info = 0.0, 0.0, 0.0, {}
        for t in range(40):
            if t < start:
                action = agent.act(obs, "mf", deterministic=True)
            else:
                action = rng.uniform(env.action_space.low, env.action_space.high)
            obs, reward, _, _, info = env.step(action.astype(np.float32))
            total += reward
            new = float(np.arctan2(obs[10], obs[9]))
            turned += (new - angle + np.pi) % (2 * np.pi) - np.pi  # unwrapped
            angle = new
            travel_now = abs(turned)
        returns.append(total)
        successes.append(info["success"])
        travel.append(travel_now)
    return {"return": float(np.mean(returns)), "success": float(np.mean(successes)),
            "valve_travel": float(np.mean(travel)), "best_travel": float(np.max(travel))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--explore-from", type=int, nargs="*", default=[], metavar="K")
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
        for start in args.explore_from:
            r = explore_tail(env, agent, start, args.episodes)
            print(f"{run.name:14s} mf mean to {start:2d}, then uniform: return {r['return']:7.1f}  "
                  f"success {100 * r['success']:3.0f}%  valve travel at the end "
                  f"{r['valve_travel']:.2f} rad (best {r['best_travel']:.2f})")


if __name__ == "__main__":
    main()
