"""What a runner runs next: the gate decision it may use, by the run's mode.

sync (Alg. 1): the runner's assignment for seq n waits until the trainer has learnt from every
episode this runner uploaded with a smaller seq, and is then the newest decision made after
them. async: the newest decision. Before a runner's first upload both give the newest decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.orm import Session

from server.errors import NotFound, NotReady, Refused
from server.models import Episode, GateDecision, PolicySnapshot, Run, TrainerLease
from server.repository.runners import touch_runner


@dataclass(frozen=True)
class AssignmentView:
    """What an assignment names: plain values, readable after the transaction."""
    episode_steps: int
    decision_id: int
    choice: str
    reason: str
    deterministic: bool
    episodes_seen: int
    version: int
    sha256: str


def assign(
    session: Session, *, run_id: int, runner: str, seq: int, retry_after_ms: int
) -> AssignmentView:
    row = session.execute(_RUN, {"run_id": run_id}).one_or_none()
    if row is None:
        raise NotFound(f"no run with id {run_id}")
    status, mode, config = row
    if status != "running":
        raise Refused(f"run {run_id} is {status}, not running: nothing to assign until "
                      f"it is started (POST /api/v1/runs/{run_id}/start)")
    needed = (_episodes_needed(session, run_id, runner, seq, retry_after_ms)
              if mode == "sync" else 0)
    # The snapshots are stored before the decision that names them, in one transaction.
    found = session.execute(_NEWEST_DECISION, {"run_id": run_id, "needed": needed}).one_or_none()
    if found is None:
        lease = session.get(TrainerLease, run_id)
        trained = lease is not None and lease.owner is not None
        why = ("the trainer is starting or still learning" if trained else
               "no trainer holds this run yet (is a trainer running: `dclaw serve` without "
               "--no-trainer, or `dclaw trainer`?)")
        raise NotReady(f"run {run_id} has no gate decision after {needed} learnt episodes "
                       f"yet: {why}", retry_after_ms)
    touch_runner(session, run_id=run_id, name=runner, status="assigned", seq=seq)
    return AssignmentView(
        episode_steps=int(config["episode_steps"]), decision_id=found.id, choice=found.choice,
        reason=found.reason, deterministic=found.deterministic,
        episodes_seen=found.episodes_seen, version=found.version, sha256=found.sha256)


def _episodes_needed(session: Session, run_id: int, runner: str, seq: int,
                     retry_after_ms: int) -> int:
    """Sync mode: the smallest `episodes_seen` of a decision this runner may get."""
    total, learned, last_index = session.execute(
        _RUNNER_EPISODES, {"run_id": run_id, "runner": runner, "seq": seq}).one()
    if learned < total:
        raise NotReady(
            f"the trainer has not learnt from {total - learned} earlier episode(s) of runner "
            f"{runner!r} yet", retry_after_ms)
    return 0 if last_index is None else int(last_index) + 1


# Every runner asks before every episode: the statements are built once, with the values bound
# at execution (building them per request, with the ORM's entities, cost 4.7 ms of CPU per
# assignment here; see docs/BENCHMARKS.md, ingest).
_RUN = select(Run.status, Run.mode, Run.config).where(Run.id == bindparam("run_id"))
_RUNNER_EPISODES = select(
    func.count(Episode.id), func.count(Episode.train_index), func.max(Episode.train_index),
).where(Episode.run_id == bindparam("run_id"), Episode.runner == bindparam("runner"),
        Episode.seq < bindparam("seq"))
_NEWEST_DECISION = (
    select(GateDecision.id, GateDecision.choice, GateDecision.reason,
           GateDecision.deterministic, GateDecision.episodes_seen,
           PolicySnapshot.version, PolicySnapshot.sha256)
    .join(PolicySnapshot, (PolicySnapshot.run_id == GateDecision.run_id)
          & (PolicySnapshot.kind == GateDecision.choice)
          & (PolicySnapshot.version == case((GateDecision.choice == "mf", GateDecision.mf_version),
                                            else_=GateDecision.mb_version)))
    .where(GateDecision.run_id == bindparam("run_id"),
           GateDecision.episodes_seen >= bindparam("needed"))
    .order_by(GateDecision.id.desc()).limit(1))
