"""SAC gradient steps per second: ours against stable-baselines3's SAC, same sizes, same run.

Both learn from the same 20,000 random D'Claw-shaped transitions (obs 21, action 9) with two
hidden layers of 256 for actor and critics, batch 256, fixed alpha 0.2, one gradient step per
call of the update loop; trials alternate between the two so machine noise hits both alike.
Ours also carries its paper changes (LayerNorm critics, no entropy in the Q target).

    .venv/bin/python -m benchmarks.sac_speed [--steps 300] [--trials 3] [--bf16]

`--bf16` adds a third arm: our update under CPU bfloat16 autocast (the matrix products in
bfloat16, weights, optimiser and losses in float32). A speed measurement only: the learner
does not run this way, and its learning under it has not been measured.

Needs stable-baselines3 (`pip install stable-baselines3`; not a project dependency).
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium
import numpy as np
import torch

from learner.buffer import EpisodeBuffer
from learner.config import make_config
from learner.sac import SAC

OBS, ACT, T, EPISODES = 21, 9, 40, 500


def make_ours(rng: np.random.Generator, bf16: bool = False):
    cfg = make_config("dclaw-paper", algorithm="sac")
    sac = SAC(OBS, ACT, cfg.sac, cfg.gamma, "cpu")
    buffer = EpisodeBuffer(OBS, ACT, T, torch.device("cpu"))
    for _ in range(EPISODES):
        buffer.add_episode(rng.normal(size=(T + 1, OBS)), rng.uniform(-1, 1, (T, ACT)),
                           rng.normal(size=T))
    gen = torch.Generator().manual_seed(0)

    def steps(n: int) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for _ in range(n):
                sac.update(buffer.sample_transitions(cfg.sac.batch_size, gen))

    return steps, cfg


def make_sb3(rng: np.random.Generator, cfg):
    from stable_baselines3 import SAC as SB3SAC

    class Dummy(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
        action_space = gymnasium.spaces.Box(-1, 1, (ACT,), np.float32)

    model = SB3SAC(
        "MlpPolicy", Dummy(), batch_size=cfg.sac.batch_size, ent_coef=cfg.sac.alpha,
        learning_starts=0, buffer_size=EPISODES * T, device="cpu",
        policy_kwargs={"net_arch": list(cfg.sac.actor_hidden)}, verbose=0,
    )
    rb = model.replay_buffer
    for _ in range(EPISODES * T):
        rb.add(rng.normal(size=(1, OBS)), rng.normal(size=(1, OBS)),
               rng.uniform(-1, 1, (1, ACT)), rng.normal(size=1), np.zeros(1), [{}])
    model._logger = __import__("stable_baselines3.common.logger", fromlist=["x"]).configure(
        None, [""]
    )

    def steps(n: int) -> None:
        model.train(gradient_steps=n, batch_size=cfg.sac.batch_size)

    return steps


def rate(steps, n: int) -> float:
    start = time.perf_counter()
    steps(n)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="add ours under bfloat16 autocast")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ours, cfg = make_ours(rng)
    sb3 = make_sb3(rng, cfg)
    ours_bf16 = make_ours(rng, bf16=True)[0] if args.bf16 else None
    ours(10), sb3(10)  # warm-up
    if ours_bf16 is not None:
        ours_bf16(10)
    r_ours, r_sb3, r_bf16 = [], [], []
    for _ in range(args.trials):
        r_ours.append(rate(ours, args.steps))
        r_sb3.append(rate(sb3, args.steps))
        if ours_bf16 is not None:
            r_bf16.append(rate(ours_bf16, args.steps))
    a, b = statistics.median(r_ours), statistics.median(r_sb3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"hidden {cfg.sac.actor_hidden}, batch {cfg.sac.batch_size}")
    print(f"  ours                {a:7.1f} gradient steps/s  (trials {[round(x) for x in r_ours]})")
    print(f"  stable-baselines3   {b:7.1f} gradient steps/s  (trials {[round(x) for x in r_sb3]})")
    print(f"  ratio ours / SB3: {a / b:.2f}")
    if r_bf16:
        c = statistics.median(r_bf16)
        print(f"  ours, bf16 autocast {c:7.1f} gradient steps/s  "
              f"(trials {[round(x) for x in r_bf16]})")
        print(f"  ratio ours bf16 / SB3: {c / b:.2f}")


if __name__ == "__main__":
    main()
