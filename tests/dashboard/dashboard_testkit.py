"""A seeded database and a real service process for the dashboard's browser tests and for
`scripts/dashboard_screenshots.py`.

The seed plays a trainer and runners through the repository functions (what they store, with
the record and stats keys the real trainer writes), so the dashboard is exercised on data of the
real shape: a Unified RL run with 60 episodes (MF and MB), a gate decision before each with K=50
estimates, learner metrics, two runners (one stopped by a safety stop), and two smaller runs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select

from dclaw.service_process import free_port, wait_ready
from dclaw.task import OBS_TARGET_ERROR
from server import migrate
from server.db import make_engine, make_session_factory, transaction
from server.models import Episode, RunnerStatus, TrainerLease, utcnow
from server.repository import episodes, events, learning, runners, runs

ADMIN = "admin-token-for-dashboard-tests-01"
RUNNER = "runner-token-for-dashboard-tests-1"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
RUNNER_AUTH = {"Authorization": f"Bearer {RUNNER}"}
STEPS, K = 40, 50
SAFETY_STOP = "motor 21: temperature 81 °C above the limit 80 °C"


@dataclass
class SeededRun:
    id: int
    name: str
    episodes: int = 0
    decisions: list[dict] = field(default_factory=list)  # {"id", "choice", "has_estimates"}


@dataclass
class Seed:
    demo: SeededRun  # unified, running, 60 episodes
    baseline: SeededRun  # sac ablation, stopped
    empty: SeededRun  # created, nothing yet


def _timing(rng: np.random.Generator) -> dict[str, float]:
    p99 = float(rng.uniform(0.2, 0.6))
    return {"period_error_p50_ms": round(p99 / 3, 3), "period_error_p99_ms": round(p99, 3),
            "period_error_max_ms": round(p99 * 1.5, 3), "compute_p50_ms": 0.8,
            "compute_p99_ms": round(float(rng.uniform(1.0, 1.6)), 3), "compute_max_ms": 2.1,
            "overruns": 0.0, "ticks": float(STEPS), "reset_s": round(float(rng.uniform(2, 4)), 2)}


def episode_arrays(rng: np.random.Generator, episode_return: float, succeeded: bool) -> dict:
    """Arrays of the right shapes whose rewards sum to `episode_return`."""
    observations = rng.normal(scale=0.5, size=(STEPS + 1, 21))
    observations[-1, OBS_TARGET_ERROR] = 0.05 if succeeded else float(rng.uniform(0.5, 2.5))
    rewards = np.full(STEPS, episode_return / STEPS) + rng.normal(scale=0.5, size=STEPS)
    rewards += (episode_return - rewards.sum()) / STEPS
    return {"observations": observations.round(4).tolist(),
            "actions": rng.uniform(-1, 1, size=(STEPS, 9)).round(4).tolist(),
            "rewards": rewards.tolist(),
            "timestamps": (np.arange(STEPS + 1) * 0.1).round(3).tolist()}


def _gate_record(rng, i: int, recent: list[str], algorithm: str) -> dict:
    record = {"choice": "mf", "reason": "warm-up", "num_masks": 0, "rollouts_per_mask": 0,
              "horizon": 0, "j_mb": [], "j_mf": [], "eps_choice": None, "compute_seconds": 0.0,
              "mb_version": i, "mf_version": i}
    if algorithm == "sac":
        return {**record, "reason": "ablation"}
    if i < 5:
        return record
    j_mf = rng.normal(-600 + 6 * i, 25, size=K)
    j_mb = j_mf + rng.normal(-40 + 2.2 * i, 22, size=K)  # MB pulls ahead as the model learns
    eps = "mb" if bool((j_mb - j_mf > 0).all()) else "mf"
    forced = eps == "mb" and len(recent) >= 9 and all(c == "mb" for c in recent[-9:])
    return {**record, "choice": "mf" if forced else eps, "reason": "forced-mf" if forced else "eps",
            "num_masks": K, "rollouts_per_mask": 10, "horizon": STEPS,
            "j_mb": j_mb.round(2).tolist(), "j_mf": j_mf.round(2).tolist(), "eps_choice": eps,
            "compute_seconds": 0.8}


def _stats(rng, i: int) -> dict[str, float]:
    decay = np.exp(-i / 25)
    return {"buffer/episodes": float(i + 1),
            "sac/critic_loss": float(40 * decay + rng.uniform(0, 4)),
            "sac/actor_loss": float(30 - 25 * (1 - decay) + rng.uniform(0, 2)),
            "sac/alpha": 0.2, "model/nll": float(-5 * (1 - decay) + rng.uniform(0, 0.5)),
            "model/loss": float(3 * decay + rng.uniform(0, 0.3)),
            "mb/loss": float(500 * decay + rng.uniform(0, 20)),
            "time/sac_s": 1.1, "time/model_s": 0.9, "time/mb_policy_s": 0.7,
            "rate/sac_updates_per_s": float(180 + rng.normal(0, 8)),
            "rate/model_updates_per_s": float(55 + rng.normal(0, 3)),
            "rate/mb_policy_updates_per_s": float(28 + rng.normal(0, 2))}


def store_policy(session, run_id: int, kind: str, version: int) -> None:
    if learning.snapshot_sha256(session, run_id=run_id, kind=kind, version=version) is None:
        data = f"policy {run_id} {kind} {version}".encode()
        learning.add_snapshot(session, run_id=run_id, kind=kind, version=version, data=data,
                              sha256=hashlib.sha256(data).hexdigest(), header={}, trainer="seed")


def seed_run(factory, *, name: str, algorithm: str, count: int, status: str,
             learned: int | None = None, seed: int = 0) -> SeededRun:
    """A run with `count` episodes of runner sim-1, each after its gate decision; the first
    `learned` (default: all but two) learnt, with metrics."""
    rng = np.random.default_rng(seed)
    learned = max(0, count - 2) if learned is None else learned
    with transaction(factory) as session:
        run = runs.create_run(session, name=name, algorithm=algorithm, preset="cpu-small",
                              mode="sync", overrides={"warmup_episodes": 5})
        if status != "created":
            runs.start_run(session, run_id=run.id)
        seeded, choices, start = SeededRun(run.id, name), [], utcnow()
        for i in range(count):
            record = _gate_record(rng, i, choices, algorithm)
            for kind in ("mf", "mb"):
                store_policy(session, run.id, kind, i)
            decision = learning.add_decision(session, run_id=run.id, episodes_seen=i,
                                             record=record, trainer="seed")
            seeded.decisions.append({"id": decision.id, "choice": record["choice"],
                                     "has_estimates": bool(record["j_mb"])})
            choices.append(record["choice"])
            progress = i / max(1, count - 1)
            target = -780 + 520 * progress + (60 if record["choice"] == "mb" else 0)
            value = float(target + rng.normal(0, 35))
            result = episodes.add_episode(
                session, run_id=run.id, idempotency_key=f"seed-{run.id}-{i:04d}", runner="sim-1",
                seq=i, policy_kind=record["choice"], policy_version=i, decision_id=decision.id,
                timing=_timing(rng), **episode_arrays(rng, value, value > -240))
            session.get(Episode, result.episode.id).created_at = start - timedelta(
                seconds=8 * (count - i))
            if i < learned:
                episodes.mark_learned(session, episode_id=result.episode.id, train_index=i)
                learning.add_metric(session, run_id=run.id, episode_id=result.episode.id,
                                    episodes_seen=i + 1, learn_seconds=2.7, stats=_stats(rng, i))
        if status == "stopped":
            runs.stop_run(session, run_id=run.id, now=time.time())
        seeded.episodes = count
    return seeded


def seed_runners(factory, run_id: int) -> None:
    """A trainer's lease (for an hour: no trainer runs), sim-1 running (heard from now) and
    claw-lab-1 stopped by a safety stop minutes ago."""
    with transaction(factory) as session:
        lease = session.get(TrainerLease, run_id)
        lease.owner, lease.generation = "gpu-box-1", 1
        lease.expires_at = lease.heartbeat_at = time.time() + 3600
        runners.touch_runner(session, run_id=run_id, name="claw-lab-1", status="safety_stop",
                             seq=17, details={"backend": "dynamixel", "episode": 17, "spooled": 1,
                                              "last_return": -702.4, "period_error_p99_ms": 0.9,
                                              "compute_p99_ms": 1.8, "overruns": 2,
                                              "message": "stopped: motor 21 over temperature"})
        lab = session.scalars(select(RunnerStatus).where(
            RunnerStatus.run_id == run_id, RunnerStatus.name == "claw-lab-1")).one()
        lab.last_seen_at = utcnow() - timedelta(minutes=4)
        events.add_event(session, run_id=run_id, runner="claw-lab-1", kind="reset_failed",
                         message="scripted reset: valve did not reach 0 within 5 s",
                         details={"valve_rad": 0.42})
        events.add_event(session, run_id=run_id, runner="claw-lab-1", kind="safety_stop",
                         message=SAFETY_STOP, details={"cause": "temperature", "motor": 21,
                                                       "value_c": 81, "limit_c": 80})
    heartbeat_sim(factory, run_id)


def heartbeat_sim(factory, run_id: int, last_return: float = -318.6) -> None:
    with transaction(factory) as session:
        runners.touch_runner(session, run_id=run_id, name="sim-1", status="running", seq=60,
                             details={"backend": "sim", "episode": 60, "spooled": 0,
                                      "last_return": last_return, "period_error_p99_ms": 0.4,
                                      "compute_p99_ms": 1.2, "overruns": 0,
                                      "message": "running episode 61"})


def seed_database(url: str) -> Seed:
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=1)
    try:
        factory = make_session_factory(engine)
        empty = seed_run(factory, name="hardware-trial-2", algorithm="unified", count=0,
                         status="created")
        baseline = seed_run(factory, name="sac-baseline", algorithm="sac", count=12,
                            status="stopped", learned=12, seed=1)
        demo = seed_run(factory, name="unified-turn-valve", algorithm="unified", count=60,
                        status="running", seed=2)
        seed_runners(factory, demo.id)
    finally:
        engine.dispose()
    return Seed(demo=demo, baseline=baseline, empty=empty)


class Service:
    """`dclaw serve --no-trainer` on the seeded database, in a subprocess."""

    def __init__(self, db_url: str, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir, self.log = workdir, workdir / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DCLAW_")}
        env.update(DCLAW_DATABASE_URL=db_url, DCLAW_ADMIN_TOKEN=ADMIN, DCLAW_RUNNER_TOKEN=RUNNER)
        dclaw = Path(sys.executable).parent / "dclaw"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [str(dclaw), "serve", "--no-trainer", "--port", str(self.port)], env=env,
                cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        try:
            wait_ready(self.url, self.process, timeout=timeout, log=self.log)
        except RuntimeError:
            self.stop()
            raise

    def logs(self) -> str:
        return self.log.read_text()[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


CHROMIUM = "/usr/bin/chromium"


def launch_chromium(playwright):
    """Debian's Chromium (Playwright's own browser download is not used)."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(
            f"{CHROMIUM} is missing: the dashboard's browser tests need Debian's Chromium "
            "(apt-get update && apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
