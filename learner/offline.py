"""Alg. 1 in one process: the agent picks a policy, the env runs it for T steps, the agent learns.

This is `dclaw train`. The env is passed in (any Gymnasium env with box spaces), so `learner/`
does not depend on the simulator. Every episode is appended to `episodes.jsonl` as it ends and a
checkpoint is written every few episodes and at the end: running the same command again with
the same `--out` resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from learner.agent import UnifiedAgent
from learner.checkpoint import load_checkpoint, save_checkpoint
from learner.config import AgentConfig, config_from_dict, config_to_dict, flat_settings

log = logging.getLogger(__name__)

EPISODES_FILE = "episodes.jsonl"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class Prior:
    """Episodes of an earlier run that a new run's buffer starts with (`add_prior_episodes`)."""

    source: str  # where they came from, as recorded in run.json
    episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (obs, actions, rewards) each


def episodes_from_run(run_dir: Path, count: int,
                      keep: Callable[[np.ndarray], bool]) -> list[tuple[np.ndarray, ...]]:
    """The last `count` episodes in a `dclaw train` run's buffer (its checkpoint) whose
    observations (T + 1, obs_dim) `keep` accepts, oldest first, as (obs, actions, rewards)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    ckpt = run_dir / CHECKPOINT_FILE
    if not ckpt.exists():
        raise ValueError(f"{run_dir} holds no checkpoint ({CHECKPOINT_FILE}) to take episodes from")
    batch = load_checkpoint(ckpt, restore_rng=False, device="cpu").buffer.all_trajectories()
    obs, actions, rewards = (t.cpu().numpy() for t in (batch.obs, batch.actions, batch.rewards))
    picked = [i for i in range(len(obs)) if keep(obs[i])][-count:]
    return [(obs[i], actions[i], rewards[i]) for i in picked]


@dataclass
class Episode:
    obs: np.ndarray  # (T + 1, obs_dim)
    actions: np.ndarray  # (T, act_dim)
    rewards: np.ndarray  # (T,)
    success: bool  # at the last step (ROBEL's score)
    success_any: bool  # at any step
    terminated: bool
    seconds: float


def run_episode(env: Any, agent: UnifiedAgent, kind: str, seed: int | None) -> Episode:
    """Runs the chosen policy (stochastic, a_t ~ pi: Alg. 1 line 12) until the episode ends."""
    start = time.perf_counter()
    obs, info = env.reset(seed=seed)
    observations, actions, rewards = [obs], [], []
    success = success_any = terminated = False
    done = False
    while not done:
        action = agent.act(obs, kind, deterministic=False)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        success = bool(info.get("success", False))
        success_any |= success
        done = terminated or truncated
    return Episode(
        obs=np.asarray(observations, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.float32),
        rewards=np.asarray(rewards, dtype=np.float32),
        success=success,
        success_any=success_any,
        terminated=bool(terminated),
        seconds=time.perf_counter() - start,
    )


def train(
    env: Any,
    config: AgentConfig,
    episodes: int,
    out: Path,
    *,
    preset: str = "",
    checkpoint_every: int = 10,
    progress: bool = True,
    prior: Prior | None = None,
) -> Path:
    """Trains until `episodes` episodes are in `out/episodes.jsonl`; returns that file.

    `prior`: episodes of an earlier run put in the buffer before the first episode (a new run
    only; a resumed run must name the same source)."""
    out.mkdir(parents=True, exist_ok=True)
    agent, done = _resume_or_start(config, out, preset, prior)
    episodes_file = out / EPISODES_FILE
    bar = tqdm(total=episodes, initial=done, disable=not progress, unit="ep",
               desc=f"{config.algorithm} seed {config.seed}")
    with episodes_file.open("a") as sink, bar:
        for index in range(done, episodes):
            record = agent.decide()
            episode = run_episode(env, agent, record.choice, seed=config.seed * 100_000 + index)
            start = time.perf_counter()
            stats = agent.observe_episode(
                episode.obs, episode.actions, episode.rewards, episode.terminated,
                policy_kind=record.choice,
            )
            learn_seconds = time.perf_counter() - start
            row = _row(index, episode, record.to_dict(), stats, learn_seconds)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            bar.set_postfix(ret=f"{row['return']:.0f}", ran=record.choice, ok=int(episode.success))
            bar.update()
            if (index + 1) % checkpoint_every == 0 or index + 1 == episodes:
                _save(agent, out)
    return episodes_file


def _row(index, episode: Episode, gate: dict, stats: dict, learn_seconds: float) -> dict:
    return {
        "episode": index,
        "return": float(episode.rewards.sum()),
        "success": episode.success,
        "success_any": episode.success_any,
        "policy": gate["choice"],
        "reason": gate["reason"],
        "gate": gate,
        "learner": {k: float(v) for k, v in stats.items()},
        "env_seconds": episode.seconds,
        "learn_seconds": learn_seconds,
        "wall_time": time.time(),
    }


def _save(agent: UnifiedAgent, out: Path) -> None:
    tmp = out / f".{CHECKPOINT_FILE}.tmp"
    save_checkpoint(agent, tmp)
    tmp.replace(out / CHECKPOINT_FILE)  # atomic: a crash never leaves half a checkpoint


def _resume_or_start(config: AgentConfig, out: Path, preset: str,
                     prior: Prior | None = None) -> tuple[UnifiedAgent, int]:
    """A fresh agent, or the checkpointed one with the episodes logged after it dropped."""
    run_file, ckpt = out / RUN_FILE, out / CHECKPOINT_FILE
    if not ckpt.exists():
        (out / EPISODES_FILE).unlink(missing_ok=True)
        agent = UnifiedAgent(config)
        meta: dict[str, Any] = {"algorithm": config.algorithm, "seed": config.seed,
                                "preset": preset, "config": config_to_dict(config)}
        if prior is not None:
            added = agent.add_prior_episodes(prior.episodes)
            meta["prior"] = {"source": prior.source, "episodes": added}
            log.info("%s starts with %d prior episodes from %s", out, added, prior.source)
        run_file.write_text(json.dumps(meta, indent=2))
        return agent, 0
    saved = json.loads(run_file.read_text())
    began_with = (saved.get("prior") or {}).get("source")
    if prior is not None and prior.source != began_with:
        raise ValueError(
            f"{out} holds a run that began with prior episodes from {began_with or 'no run'}, "
            f"not {prior.source}; resume it without --prior (or the same one) or use a new --out")
    # Through config_from_dict: settings added since the run began take their defaults.
    saved_config = config_to_dict(config_from_dict(saved["config"]))
    differs = _differences(saved_config, config_to_dict(config))
    if differs:
        raise ValueError(
            f"{out} holds a run with another configuration ({'; '.join(differs)}); resume it "
            "with the run's values (e.g. --set NAME=VALUE) or use a new --out")
    agent = load_checkpoint(ckpt)
    done = agent.episodes_seen
    _truncate_log(out / EPISODES_FILE, done)
    log.info("resuming %s at episode %d", out, done)
    return agent, done


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'name: run V, now W' for each setting that differs, in the `--set` spelling, compared
    as JSON (tuples and lists alike)."""
    old, new = (flat_settings(json.loads(json.dumps(c))) for c in (saved, now))
    return [f"{name}: run {json.dumps(old.get(name))}, now {json.dumps(new.get(name))}"
            for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]


def _truncate_log(path: Path, keep: int) -> None:
    """Drops log lines written after the checkpoint: those episodes are run again."""
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    path.write_text("".join(lines[:keep]))


def read_episodes(run_dir: Path) -> list[dict]:
    with (run_dir / EPISODES_FILE).open() as f:
        return [json.loads(line) for line in f if line.strip()]


def read_run(run_dir: Path) -> dict:
    return json.loads((run_dir / RUN_FILE).read_text())
