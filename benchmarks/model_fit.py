"""How well the dropout-LSTM model fits D'Claw data: NLL per 100 updates on random episodes.

Used to choose the prior's N (A.2.1) and the cpu-small model width. One thread, fixed seeds.

    .venv/bin/python -m benchmarks.model_fit [--preset dclaw-paper] [--eta 200]
        [--prior-unit trajectory|transition] [--width W] [--batch B] [--updates 300]
"""

from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np
import torch

import sim
from benchmarks.learner_time import random_episode
from learner.buffer import EpisodeBuffer
from learner.config import make_config
from learner.dynamics import DynamicsModel, DynamicsTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="dclaw-paper")
    parser.add_argument("--eta", type=float, default=200.0)
    parser.add_argument("--prior-unit", default="transition", choices=["transition", "trajectory"])
    parser.add_argument("--width", type=int, default=None, help="all model widths")
    parser.add_argument("--batch", type=int, default=None, help="trajectories per batch")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--updates", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    over = {"dynamics__eta": args.eta, "dynamics__prior_data_unit": args.prior_unit}
    if args.width:
        over |= {"dynamics__input_size": args.width, "dynamics__lstm_size": args.width,
                 "dynamics__hidden_sizes": (args.width, args.width)}
    if args.batch:
        over["dynamics__batch_trajectories"] = args.batch
    cfg = make_config(args.preset, **over).dynamics
    env = gymnasium.make(sim.ENV_ID)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    buffer = EpisodeBuffer(21, 9, 40, torch.device("cpu"))
    for _ in range(args.episodes):
        buffer.add_episode(*random_episode(env, rng))
    torch.manual_seed(0)
    model = DynamicsModel(21, 9, cfg)
    trainer = DynamicsTrainer(model, cfg)
    gen = torch.Generator().manual_seed(0)
    start, nll = time.perf_counter(), []
    for _ in range(args.updates // 100):
        nll.append(round(trainer.train(buffer, gen, updates=100)["model/nll"]))
    print(f"{args.preset} width {cfg.lstm_size} batch {cfg.batch_trajectories} eta {args.eta} "
          f"N in {args.prior_unit}s, {args.episodes} random episodes: NLL per 100 updates {nll} "
          f"(unit Gaussian ~1246), {1000 * (time.perf_counter() - start) / args.updates:.0f} "
          "ms/update")


if __name__ == "__main__":
    main()
