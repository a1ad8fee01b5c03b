"""Milliseconds per learner update, part by part, on random data (no simulator needed).

Times one model update (teacher-forced, whole sequences at once: `DynamicsModel.replay`)
against the same update with the replay done one `step` at a time (`observe`, the reference;
the loss itself is the same code for both), one MB-policy
update, one SAC update and one gate decision, each after a warm-up, synchronising the device.
Prints the aten operations each update dispatches too (what a GPU's host side pays for).

    python -m benchmarks.update_speed [--device cuda] [--preset dclaw-paper] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from learner import gate
from learner.agent import UnifiedAgent
from learner.config import make_config
from learner.dynamics import DynamicsModel, ModelState, Prediction


def stepwise_replay(model: DynamicsModel, batch, masks):
    """`DynamicsModel.replay` computed as before it existed: T calls of `step` (`observe`),
    stacked into the same shapes, so the rest of `loss` is the same code."""
    predictions, states = model.observe(batch, masks)
    stacked = Prediction(*(torch.stack(parts, 1) for parts in zip(*predictions, strict=True)))
    h, c = (torch.stack(parts, 1) for parts in zip(*((s.h, s.c) for s in states), strict=True))
    return stacked, ModelState(h, c, masks)


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def aten_ops(fn: Callable[[], object]) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="dclaw-paper")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    agent = UnifiedAgent(make_config(args.preset, device=args.device))
    rng = np.random.default_rng(0)
    T = agent.config.episode_steps
    for _ in range(20):
        agent.buffer.add_episode(rng.normal(size=(T + 1, 21)).astype(np.float32),
                                 rng.uniform(-1, 1, (T, 9)).astype(np.float32),
                                 rng.normal(size=T).astype(np.float32))
    model, trainer, g = agent.model, agent.model_trainer, agent.generator
    assert model is not None and trainer is not None and agent.mb is not None
    model.fit_normaliser(agent.buffer.all_trajectories())

    def model_update():
        trainer.train(agent.buffer, g, updates=1)

    def model_update_stepwise():
        model.replay = lambda batch, masks: stepwise_replay(model, batch, masks)
        try:
            trainer.train(agent.buffer, g, updates=1)
        finally:
            del model.replay  # the class's own method again

    parts = [
        ("model update, whole sequences", model_update),
        ("model update, step by step", model_update_stepwise),
        ("MB policy update", lambda: agent.mb.update(model, agent.buffer, g)),
        ("SAC update", lambda: agent.sac.update(agent.buffer.sample_transitions(256, g))),
        ("gate decide", lambda: gate.decide(model, agent.mb.policy, agent.sac.actor,
                                            agent.buffer.initial_observations(),
                                            agent.resolved_config.gate)),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device "
          f"{agent.device}, preset {args.preset}")
    for name, fn in parts:
        ms = timed(fn, args.repeats, agent.device)
        print(f"  {name:32s} {ms:9.1f} ms   {aten_ops(fn):6d} aten ops", flush=True)


if __name__ == "__main__":
    main()
