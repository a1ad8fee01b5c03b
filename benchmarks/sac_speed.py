"""SAC gradient steps per second: ours against stable-baselines3's SAC, same sizes, same run.

Both learn from the same 20,000 random D'Claw-shaped transitions (obs 21, action 9) with two
hidden layers of 256 for actor and critics, batch 256, fixed alpha 0.2, one gradient step per
call of the update loop; trials alternate between the arms so machine noise hits all alike.
Ours also carries its paper changes (LayerNorm critics, no entropy in the Q target), and is
timed twice: its fused step (`learner/sac_fused.py`, what training runs) and the same step
through autograd (`SAC.update_autograd`).

    .venv/bin/python -m benchmarks.sac_speed [--steps 300] [--trials 3]

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


def make_ours(rng: np.random.Generator, fused: bool = True):
    cfg = make_config("dclaw-paper", algorithm="sac")
    sac = SAC(OBS, ACT, cfg.sac, cfg.gamma, "cpu")
    buffer = EpisodeBuffer(OBS, ACT, T, torch.device("cpu"))
    for _ in range(EPISODES):
        buffer.add_episode(rng.normal(size=(T + 1, OBS)), rng.uniform(-1, 1, (T, ACT)),
                           rng.normal(size=T))
    gen = torch.Generator().manual_seed(0)

    update = sac.update if fused else sac.update_autograd

    def steps(n: int) -> None:
        for _ in range(n):
            update(buffer.sample_transitions(cfg.sac.batch_size, gen))

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
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ours, cfg = make_ours(rng)
    autograd, _ = make_ours(rng, fused=False)
    arms = {"ours (fused step)": ours, "ours (autograd)": autograd,
            "stable-baselines3": make_sb3(rng, cfg)}
    for steps in arms.values():
        steps(10)  # warm-up: buffers, optimiser state
    rates: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.trials):  # interleaved, so machine noise hits every arm alike
        for name, steps in arms.items():
            rates[name].append(rate(steps, args.steps))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"hidden {cfg.sac.actor_hidden}, batch {cfg.sac.batch_size}")
    median = {name: statistics.median(r) for name, r in rates.items()}
    for name, r in rates.items():
        print(f"  {name:20s} {median[name]:7.1f} gradient steps/s  "
              f"(trials {[round(x) for x in r]})")
    sb3 = median["stable-baselines3"]
    print(f"  ratio fused / SB3: {median['ours (fused step)'] / sb3:.2f}   "
          f"autograd / SB3: {median['ours (autograd)'] / sb3:.2f}")


if __name__ == "__main__":
    main()
