"""Branches a stalled `dclaw train` run to find out why it stalls (docs/BENCHMARKS.md, "Why a
seed stalls").

Copies RUN_DIR to OUT with its checkpoint changed one way; `dclaw train` with the run's own
settings and `--out OUT --episodes N` then continues the branch from the same episode:

  continue        nothing changed: the control
  reset-sac       SAC's actor, critics, target critics, temperature and optimisers drawn afresh
                  (as at episode 0); the buffer kept (the "primacy bias" test, Nikishin et al. 2022)
  add-successes   the last --count successful episodes in --donor's buffer appended to the
                  buffer (they are not counted as episodes of the run)

    .venv/bin/python -m benchmarks.stall_branch RUN_DIR OUT MODE [--donor RUN] [--count K]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from dclaw import task
from learner.checkpoint import load_checkpoint, save_checkpoint
from learner.offline import CHECKPOINT_FILE, episodes_from_run
from learner.sac import SAC

MODES = ("continue", "reset-sac", "add-successes")


def successful_episodes(run_dir: Path, count: int):
    """The last `count` episodes of a run's buffer whose valve ended within the success
    threshold (ROBEL's score: the target error of the last observation)."""
    return episodes_from_run(run_dir, count, keep=task.episode_succeeded)


def branch(run_dir: Path, out: Path, mode: str, donor: Path | None = None, count: int = 5,
           seed: int = 4242) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode == "add-successes" and donor is None:
        raise ValueError("add-successes needs --donor RUN_DIR")
    episodes = successful_episodes(donor, count) if mode == "add-successes" else []
    shutil.copytree(run_dir, out)
    # The branch goes on with the run's own random state (reset-sac then reseeds torch).
    agent = load_checkpoint(out / CHECKPOINT_FILE)
    what = "unchanged"
    if mode == "reset-sac":
        c = agent.resolved_config
        torch.manual_seed(seed)
        agent.sac = SAC(c.obs_dim, c.act_dim, c.sac, c.gamma, agent.device)
        agent.versions["mf"] += 1
        what = "SAC drawn afresh"
    elif mode == "add-successes":
        for obs, actions, rewards in episodes:
            agent.buffer.add_episode(obs, actions, rewards)
        what = f"{len(episodes)} successful episodes of {donor} added"
    save_checkpoint(agent, out / CHECKPOINT_FILE)
    return (f"{out}: {what}; episode {agent.episodes_seen}, buffer {len(agent.buffer)} episodes; "
            f"continue with dclaw train --out {out} --episodes N and the run's settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--donor", type=Path, help="add-successes: the run to take them from")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--seed", type=int, default=4242, help="reset-sac: initialisation seed")
    args = parser.parse_args()
    print(branch(args.run_dir, args.out, args.mode, args.donor, args.count, args.seed))


if __name__ == "__main__":
    main()
