"""What a runner runs next: the gate decision it may use, by the run's mode.

sync (Alg. 1): the runner's assignment for seq n waits until the trainer has learnt from every
episode this runner uploaded with a smaller seq, and is then the newest decision made after
them. async: the newest decision. Before a runner's first upload both give the newest decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from server.errors import NotReady, Refused
from server.models import Episode, GateDecision, PolicySnapshot, Run, TrainerLease
from server.repository.runners import touch_runner
from server.repository.runs import get_run


@dataclass
class AssignmentView:
    run: Run
    decision: GateDecision
    version: int
    sha256: str


def assign(
    session: Session, *, run_id: int, runner: str, seq: int, retry_after_ms: int
) -> AssignmentView:
    run = get_run(session, run_id=run_id)
    if run.status != "running":
        raise Refused(f"run {run_id} is {run.status}, not running: nothing to assign until "
                      f"it is started (POST /api/v1/runs/{run_id}/start)")
    needed = _episodes_needed(session, run, runner, seq, retry_after_ms)
    version = case((GateDecision.choice == "mf", GateDecision.mf_version),
                   else_=GateDecision.mb_version)
    # The snapshots are stored before the decision that names them, in one transaction.
    row = session.execute(
        select(GateDecision, PolicySnapshot.version, PolicySnapshot.sha256)
        .join(PolicySnapshot, (PolicySnapshot.run_id == GateDecision.run_id)
              & (PolicySnapshot.kind == GateDecision.choice)
              & (PolicySnapshot.version == version))
        .where(GateDecision.run_id == run_id, GateDecision.episodes_seen >= needed)
        .order_by(GateDecision.id.desc()).limit(1)).one_or_none()
    if row is None:
        lease = session.get(TrainerLease, run_id)
        trained = lease is not None and lease.owner is not None
        why = ("the trainer is starting or still learning" if trained else
               "no trainer holds this run yet (is a trainer running: `dclaw serve` without "
               "--no-trainer, or `dclaw trainer`?)")
        raise NotReady(f"run {run_id} has no gate decision after {needed} learnt episodes "
                       f"yet: {why}", retry_after_ms)
    decision, version, sha256 = row
    touch_runner(session, run_id=run_id, name=runner, status="assigned", seq=seq)
    return AssignmentView(run, decision, version, sha256)


def _episodes_needed(session: Session, run: Run, runner: str, seq: int,
                     retry_after_ms: int) -> int:
    """The smallest `episodes_seen` of a decision this runner may get."""
    if run.mode != "sync":
        return 0
    total, learned, last_index = session.execute(
        select(func.count(Episode.id), func.count(Episode.train_index),
               func.max(Episode.train_index))
        .where(Episode.run_id == run.id, Episode.runner == runner, Episode.seq < seq)
    ).one()
    if learned < total:
        raise NotReady(
            f"the trainer has not learnt from {total - learned} earlier episode(s) of runner "
            f"{runner!r} yet", retry_after_ms)
    return 0 if last_index is None else int(last_index) + 1
