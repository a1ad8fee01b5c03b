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
from dclaw import task
from learner.checkpoint import load_checkpoint


def _episode(env, choose, seed: int) -> tuple[float, bool, float, float]:
    """One episode with actions from `choose(step, obs)`: its return, success at the last step,
    the largest |valve angle| seen (wrapped) and the valve's unwrapped travel at the end."""
    obs, _ = env.reset(seed=seed)
    total, widest, turned, angle, info = 0.0, 0.0, 0.0, 0.0, {}
    for step in range(task.EPISODE_STEPS):
        obs, reward, _, _, info = env.step(choose(step, obs))
        total += reward
        new = float(np.arctan2(obs[task.OBS_VALVE_SIN], obs[task.OBS_VALVE_COS]))
        widest = max(widest, abs(new))
        turned += float(task.wrap_angle(new - angle))
        angle = new
    return total, bool(info["success"]), widest, abs(turned)


def evaluate(env, agent, kind: str, deterministic: bool, episodes: int) -> dict[str, float]:
    runs = np.array([
        _episode(env, lambda _, obs: agent.act(obs, kind, deterministic=deterministic),
                 10_000 + i)
        for i in range(episodes)
    ])
    return {"return": runs[:, 0].mean(), "success": runs[:, 1].mean(),
            "valve_travel": runs[:, 2].mean()}


def explore_tail(env, agent, start: int, episodes: int) -> dict[str, float]:
    """Mean action until `start`, then uniform random actions; valve travel unwrapped."""
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high

    def choose(step, obs):
        if step < start:
            return agent.act(obs, "mf", deterministic=True)
        return rng.uniform(low, high).astype(np.float32)

    runs = np.array([_episode(env, choose, 20_000 + i) for i in range(episodes)])
    return {"return": runs[:, 0].mean(), "success": runs[:, 1].mean(),
            "valve_travel": runs[:, 3].mean(), "best_travel": runs[:, 3].max()}


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
