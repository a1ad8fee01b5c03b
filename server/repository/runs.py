"""Runs: create, read, start, stop, delete. Status moves created → running ⇄ stopping → stopped
(or failed, when the trainer could not go on); start works from any state but running."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.errors import Conflict, InvalidInput, NotFound
from server.models import Checkpoint, Episode, Run, TrainerLease, utcnow
from server.run_config import resolve_config

DELETABLE = ("created", "stopped", "failed")


@dataclass
class RunView:
    """A run with what the API shows beside it."""

    run: Run
    episodes: int = 0
    episodes_learned: int = 0
    lease: TrainerLease | None = None


def create_run(
    session: Session,
    *,
    name: str,
    algorithm: str,
    preset: str,
    mode: str,
    overrides: dict[str, Any],
    prior: dict[str, Any] | None = None,
) -> Run:
    config = resolve_config(preset=preset, algorithm=algorithm, overrides=overrides)
    if session.scalar(select(Run.id).where(Run.name == name)) is not None:
        raise Conflict(f"a run named {name!r} exists already")
    if prior is not None:
        _check_prior(session, prior, steps=config["episode_steps"])
    run = Run(name=name, algorithm=algorithm, preset=preset, mode=mode, overrides=overrides,
              config=config, prior=prior, status="created")
    session.add(run)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent create with the same name
        raise Conflict(f"a run named {name!r} exists already") from exc
    session.add(TrainerLease(run_id=run.id))
    session.flush()
    return run


def _check_prior(session: Session, prior: dict[str, Any], *, steps: int) -> None:
    """The source run must exist and hold a successful episode of this run's length."""
    source = prior["run_id"]
    if session.scalar(select(Run.id).where(Run.id == source)) is None:
        raise InvalidInput(f"prior.run_id: no run with id {source}")
    found = session.scalar(select(func.count()).select_from(Episode).where(
        Episode.run_id == source, Episode.success.is_(True), Episode.steps == steps))
    if not found:
        raise InvalidInput(f"prior.run_id: run {source} holds no successful episode of "
                           f"{steps} steps to start from")


def get_run(session: Session, *, run_id: int, for_update: bool = False) -> Run:
    query = select(Run).where(Run.id == run_id)
    if for_update:
        query = query.with_for_update()
    run = session.scalar(query)
    if run is None:
        raise NotFound(f"no run with id {run_id}")
    return run


def list_runs(session: Session, *, limit: int, offset: int) -> list[RunView]:
    runs = session.scalars(select(Run).order_by(Run.id).limit(limit).offset(offset)).all()
    return _views(session, list(runs))


def get_run_view(session: Session, *, run_id: int) -> RunView:
    return _views(session, [get_run(session, run_id=run_id)])[0]


def _views(session: Session, runs: list[Run]) -> list[RunView]:
    ids = [run.id for run in runs]
    if not ids:
        return []
    counts = {
        run_id: (total, learned)
        for run_id, total, learned in session.execute(
            select(Episode.run_id, func.count(Episode.id), func.count(Episode.train_index))
            .where(Episode.run_id.in_(ids))
            .group_by(Episode.run_id)
        )
    }
    leases = {
        lease.run_id: lease
        for lease in session.scalars(select(TrainerLease).where(TrainerLease.run_id.in_(ids)))
    }
    now = time.time()
    views = []
    for run in runs:
        total, learned = counts.get(run.id, (0, 0))
        lease = leases.get(run.id)
        held = lease is not None and lease.owner is not None and (lease.expires_at or 0) > now
        views.append(RunView(run, total, learned, lease if held else None))
    return views


def start_run(session: Session, *, run_id: int) -> Run:
    run = get_run(session, run_id=run_id, for_update=True)
    if run.status != "running":
        run.status = "running"
        run.error = None
        run.started_at = utcnow()
        run.stopped_at = None
    if session.get(TrainerLease, run_id) is None:
        session.add(TrainerLease(run_id=run_id))
    session.flush()
    return run


def stop_run(session: Session, *, run_id: int, now: float) -> Run:
    """A run trained by a live trainer goes to `stopping`: the trainer ends its step after the
    episode it is learning from, checkpoints and sets `stopped`. With no live trainer the run
    is `stopped` at once."""
    run = get_run(session, run_id=run_id, for_update=True)
    if run.status == "created":
        raise Conflict(f"run {run_id} was never started")
    if run.status == "stopped":
        return run
    lease = session.get(TrainerLease, run_id)
    trained = lease is not None and lease.owner is not None and (lease.expires_at or 0) > now
    run.status = "stopping" if trained else "stopped"
    if run.status == "stopped":
        run.stopped_at = utcnow()
    session.flush()
    return run


def delete_run(session: Session, *, run_id: int) -> list[str]:
    """Deletes a stopped (or never started, or failed) run and everything stored for it;
    returns the checkpoint files to remove once the transaction has committed."""
    run = get_run(session, run_id=run_id, for_update=True)
    if run.status not in DELETABLE:
        raise Conflict(f"run {run_id} is {run.status}: stop it before deleting it")
    paths = [p for p in session.scalars(select(Checkpoint.path).where(
        Checkpoint.run_id == run_id, Checkpoint.path.is_not(None)))]
    session.execute(delete(Run).where(Run.id == run_id))
    session.flush()
    return [str(p) for p in paths]


def set_run_status(session: Session, *, run_id: int, status: str, expect: tuple[str, ...],
                   error: str | None = None) -> bool:
    """Compare-and-set of a run's status (the trainer's `stopping → stopped`, `→ failed`)."""
    run = session.scalar(select(Run).where(Run.id == run_id).with_for_update())
    if run is None or run.status not in expect:
        return False
    run.status = status
    if error is not None:
        run.error = error[:4000]
    if status in ("stopped", "failed"):
        run.stopped_at = utcnow()
    session.flush()
    return True
