"""Learner wall time per episode (all updates of Alg. 1 + the gate) for each preset, on the sim.

Fills the buffer with random-policy episodes from `DClawTurnFixed-v0` (past the warm-up), then
times `observe_episode` (SAC, model and MB-policy updates) and `decide` (the EPS gate) for a few
more episodes of the unified algorithm.

    .venv/bin/python -m benchmarks.learner_time [--presets cpu-small dclaw-paper] [--episodes 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium
import numpy as np
import torch

import sim
from learner.agent import UnifiedAgent
from learner.config import make_config


def random_episode(env, rng):
    obs, _ = env.reset()
    observations, actions, rewards = [obs], [], []
    for _ in range(40):
        a = rng.uniform(-1, 1, 9).astype(np.float32)
        obs, r, *_ = env.step(a)
        observations.append(obs)
        actions.append(a)
        rewards.append(r)
    return np.array(observations), np.array(actions), np.array(rewards, dtype=np.float32)


def time_preset(preset: str, episodes: int, prefill: int) -> dict[str, float]:
    agent = UnifiedAgent(make_config(preset, algorithm="unified", seed=0))
    env = gymnasium.make(sim.ENV_ID)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(max(prefill, agent.config.warmup_episodes) - 1):
        agent.buffer.add_episode(*random_episode(env, rng))
    observe, gate, parts = [], [], {}
    for _ in range(episodes):
        ep = random_episode(env, rng)
        start = time.perf_counter()
        stats = agent.observe_episode(*ep)
        observe.append(time.perf_counter() - start)
        start = time.perf_counter()
        agent.decide()
        gate.append(time.perf_counter() - start)
        for k, v in stats.items():
            if k.startswith("time/"):
                parts.setdefault(k, []).append(v)
    out = {"updates_s": statistics.median(observe), "gate_s": statistics.median(gate)}
    out |= {k: statistics.median(v) for k, v in parts.items()}
    out["total_s"] = out["updates_s"] + out["gate_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cpu-small", "dclaw-paper"])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--prefill", type=int, default=20, help="episodes in the buffer first")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    for preset in args.presets:
        figures = time_preset(preset, args.episodes, args.prefill)
        detail = ", ".join(f"{k} {v:.3f}" for k, v in figures.items())
        print(f"{preset:12s} learner seconds per episode (median of {args.episodes}): {detail}")


if __name__ == "__main__":
    main()
