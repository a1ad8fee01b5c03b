"""How far a dynamics model's multi-step predictions drift from what really happened.

The EPS gate compares J-hat(MB) and J-hat(MF) from T-step model rollouts (A.2.4). This replays
real episodes of a `dclaw train` run through a model: the recorded actions, open loop from the
recorded initial state, each under K masks, and compares the predicted return and valve travel
with the real ones; teacher-forced one-step predictions (the model fed the real states, as in
training) are shown beside them. A model whose one-step predictions are right but whose open-
loop returns are too low underrates good behaviour, and the gate then prefers whatever policy
was optimised inside that model.

    python -m benchmarks.model_bias RUN_DIR [--probe 30] [--masks 20]
    python -m benchmarks.model_bias RUN_DIR --fit cpu-small dclaw-paper --updates 1500

With --fit, fresh models of those presets' sizes are trained on the run's episodes except the
last --probe ones, which are then the (held-out) probe; without it, the run's own model (its
checkpoint) is probed on its last episodes, which it has trained on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dclaw import task
from learner.buffer import EpisodeBuffer, TrajectoryBatch
from learner.checkpoint import load_checkpoint
from learner.config import make_config
from learner.dynamics import DynamicsModel, DynamicsTrainer


def valve_angle(obs: torch.Tensor) -> torch.Tensor:
    return torch.atan2(obs[..., task.OBS_VALVE_SIN], obs[..., task.OBS_VALVE_COS])


@torch.no_grad()
def probe(model: DynamicsModel, data: TrajectoryBatch, masks: int,
          copy_action: bool = False) -> dict[str, np.ndarray]:
    """Per probe episode: real return, teacher-forced return, open-loop return (mean model
    and sampled, averaged over masks), and valve travel (real, open-loop mean model).
    `copy_action`: the observation's last-action block is set to the action just taken after
    every model step (it is that, exactly) instead of the model's prediction of it."""
    n, steps = data.actions.shape[:2]
    pred, _ = model.replay(data, model.sample_masks(n))
    teacher = model.rewards.denormalise(pred.reward_mean.unsqueeze(-1)).squeeze(-1).sum(1)
    record = model.sample_masks(masks).repeat_interleave(n)
    actions = data.actions.repeat(masks, 1, 1)
    out = {}
    for name, deterministic in (("open_mean", True), ("open_sampled", False)):
        obs = data.obs[:, 0].repeat(masks, 1)
        state, total = model.reset(obs.shape[0], record), torch.zeros(obs.shape[0])
        for t in range(steps):
            obs, reward, state = model.sample(state, obs, actions[:, t], deterministic)
            if copy_action:
                obs[:, task.OBS_LAST_ACTION] = actions[:, t]
            total += reward
        out[name] = total.view(masks, n).mean(0).numpy()
        if deterministic:
            travel = (valve_angle(obs) - valve_angle(data.obs[:, 0].repeat(masks, 1)))
            out["travel_open"] = travel.view(masks, n).mean(0).numpy()
    out["real"] = data.rewards.sum(1).numpy()
    out["teacher"] = teacher.numpy()
    out["travel_real"] = (valve_angle(data.obs[:, -1]) - valve_angle(data.obs[:, 0])).numpy()
    return out


def report(name: str, kinds: np.ndarray, figures: dict[str, np.ndarray]) -> None:
    for kind in ("mf", "mb"):
        pick = kinds == kind
        if not pick.any():
            continue
        f = {k: v[pick].mean() for k, v in figures.items()}
        print(f"  {name:24s} {kind.upper()} n={pick.sum():3d}  return real {f['real']:7.1f}"
              f"  teacher-forced {f['teacher']:7.1f}  open loop: mean model {f['open_mean']:7.1f}"
              f", sampled {f['open_sampled']:7.1f}  valve travel real {f['travel_real']:.2f}"
              f" open loop {f['travel_open']:.2f} rad", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--probe", type=int, default=30, help="last episodes replayed")
    parser.add_argument("--masks", type=int, default=20)
    parser.add_argument("--fit", nargs="*", default=[], help="presets of fresh models to fit")
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    agent = load_checkpoint(args.run / "checkpoint.pt", device="cpu", restore_rng=False)
    rows = [json.loads(line) for line in (args.run / "episodes.jsonl").open()]
    n = len(agent.buffer)
    kinds = np.array([r["policy"] for r in rows[:n]])[n - args.probe:]
    everything = agent.buffer.all_trajectories()
    held_out = TrajectoryBatch(*(x[n - args.probe:] for x in everything))
    print(f"{args.run}: {n} episodes, probe = the last {args.probe}")
    if agent.model is not None:
        report("the run's own model", kinds, probe(agent.model, held_out, args.masks))
        report("  same, action copied", kinds, probe(agent.model, held_out, args.masks, True))
    config = agent.config
    for preset in args.fit:
        dyn = make_config(preset).dynamics
        train = EpisodeBuffer(config.obs_dim, config.act_dim, config.episode_steps)
        for i in range(n - args.probe):
            train.add_episode(everything.obs[i], everything.actions[i], everything.rewards[i])
        model = DynamicsModel(config.obs_dim, config.act_dim, dyn)
        trainer, generator = DynamicsTrainer(model, dyn), torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        stats = trainer.train(train, generator, updates=args.updates)
        seconds = time.perf_counter() - start
        report(f"fresh {preset}", kinds, probe(model, held_out, args.masks))
        report("  same, action copied", kinds, probe(model, held_out, args.masks, True))
        print(f"  {'':24s} ({args.updates} updates in {seconds:.0f} s, final batch NLL "
              f"{stats['model/nll']:.1f})")


if __name__ == "__main__":
    main()
