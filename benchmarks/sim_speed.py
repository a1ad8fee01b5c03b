"""Simulator speed: env steps per second against the bound set by MuJoCo itself.

The bound replays the very control targets the env wrote, on the same model, with nothing but
`mujoco.mj_step` (40 physics steps per env step) and a ctrl assignment, so both sides simulate
identical physics. Trials alternate between the two so machine noise hits both alike.

    .venv/bin/python -m benchmarks.sim_speed [--steps 4000] [--trials 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium
import mujoco
import numpy as np

import sim
from dclaw import task


def run_env(env: gymnasium.Env, actions: np.ndarray) -> tuple[float, np.ndarray]:
    """Steps the env through `actions`, resetting every 40 steps; returns (seconds, ctrls)."""
    ctrls = np.empty((len(actions), task.N_JOINTS))
    data = env.unwrapped.data
    env.reset(seed=0)
    start = time.perf_counter()
    for i, a in enumerate(actions):
        if i and i % task.EPISODE_STEPS == 0:
            env.reset()
        env.step(a)
        ctrls[i] = data.ctrl
    return time.perf_counter() - start, ctrls


def run_bound(model: mujoco.MjModel, ctrls: np.ndarray, nstep: bool) -> float:
    data = mujoco.MjData(model)
    start = time.perf_counter()
    for i, ctrl in enumerate(ctrls):
        if i % task.EPISODE_STEPS == 0:
            mujoco.mj_resetData(model, data)
        data.ctrl[:] = ctrl
        if nstep:
            mujoco.mj_step(model, data, nstep=task.FRAME_SKIP)
        else:
            for _ in range(task.FRAME_SKIP):
                mujoco.mj_step(model, data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="env steps per trial")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()

    made = gymnasium.make(sim.ENV_ID)  # as users get it: TimeLimit and checker wrappers included
    raw = made.unwrapped
    model = raw.model
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(args.steps, task.ACTION_DIM)).astype(np.float32)

    rates: dict[str, list[float]] = {"env (gymnasium.make)": [], "env (unwrapped)": []}
    rates |= {"bound: mj_step x40 loop": [], "bound: mj_step nstep=40": []}
    for _ in range(args.trials):
        t_made, ctrls = run_env(made, actions)
        t_raw, _ = run_env(raw, actions)
        rates["env (gymnasium.make)"].append(args.steps / t_made)
        rates["env (unwrapped)"].append(args.steps / t_raw)
        rates["bound: mj_step x40 loop"].append(args.steps / run_bound(model, ctrls, False))
        rates["bound: mj_step nstep=40"].append(args.steps / run_bound(model, ctrls, True))

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{args.trials} trials x {args.steps} env steps (40 physics steps each), median:")
    for k, v in med.items():
        print(f"  {k:26s} {v:9.0f} env steps/s  ({v * task.FRAME_SKIP:9.0f} physics steps/s)")
    bound = max(med["bound: mj_step x40 loop"], med["bound: mj_step nstep=40"])
    for k in ("env (gymnasium.make)", "env (unwrapped)"):
        print(f"  ratio {k} / fastest bound: {med[k] / bound:.3f}")


if __name__ == "__main__":
    main()
