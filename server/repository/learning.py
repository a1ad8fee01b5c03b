"""What the trainer writes and the API reads: policy snapshots, gate decisions, learner metrics
and checkpoints."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, defer

from server.errors import Gone, NotFound
from server.models import Checkpoint, GateDecision, LearnerMetric, PolicySnapshot
from server.repository.runs import get_run


# -- policies ----------------------------------------------------------------------------------
def snapshot_sha256(session: Session, *, run_id: int, kind: str, version: int) -> str | None:
    return session.scalar(select(PolicySnapshot.sha256).where(
        PolicySnapshot.run_id == run_id, PolicySnapshot.kind == kind,
        PolicySnapshot.version == version))


def newest_version(session: Session, *, run_id: int, kind: str) -> int | None:
    return session.scalar(select(func.max(PolicySnapshot.version)).where(
        PolicySnapshot.run_id == run_id, PolicySnapshot.kind == kind))


def add_snapshot(session: Session, *, run_id: int, kind: str, version: int, data: bytes,
                 sha256: str, header: dict[str, Any], trainer: str,
                 keep: int | None = None) -> None:
    """Stores a policy document; with `keep`, empties the documents of this kind older than the
    newest `keep` versions (their rows stay: episodes uploaded late may name them)."""
    session.add(PolicySnapshot(run_id=run_id, kind=kind, version=version, data=data,
                               sha256=sha256, size=len(data), header=header, trainer=trainer))
    session.flush()
    if keep is not None:
        session.execute(update(PolicySnapshot).where(
            PolicySnapshot.run_id == run_id, PolicySnapshot.kind == kind,
            PolicySnapshot.version <= version - keep, PolicySnapshot.data.is_not(None),
        ).values(data=None))


def get_snapshot(session: Session, *, run_id: int, kind: str, version: int,
                 with_data: bool = True) -> PolicySnapshot:
    query = select(PolicySnapshot).where(PolicySnapshot.run_id == run_id,
                                         PolicySnapshot.kind == kind,
                                         PolicySnapshot.version == version)
    if not with_data:
        query = query.options(defer(PolicySnapshot.data))
    snapshot = session.scalar(query)
    if snapshot is None:
        get_run(session, run_id=run_id)
        newest = newest_version(session, run_id=run_id, kind=kind)
        raise NotFound(f"run {run_id} has no {kind} policy version {version} "
                       f"(newest: {newest if newest is not None else 'none'})")
    if with_data and snapshot.data is None:
        newest = newest_version(session, run_id=run_id, kind=kind)
        raise Gone(f"run {run_id}: {kind} policy version {version} was pruned (only the newest "
                   f"versions are kept; newest: {newest}); ask for a new assignment")
    return snapshot


def list_snapshots(session: Session, *, run_id: int, kind: str | None) -> list[PolicySnapshot]:
    get_run(session, run_id=run_id)
    query = select(PolicySnapshot).options(defer(PolicySnapshot.data)).where(
        PolicySnapshot.run_id == run_id)
    if kind is not None:
        query = query.where(PolicySnapshot.kind == kind)
    return list(session.scalars(query.order_by(PolicySnapshot.kind, PolicySnapshot.version)))


# -- gate decisions and learner metrics --------------------------------------------------------
def add_decision(session: Session, *, run_id: int, episodes_seen: int, record: dict[str, Any],
                 trainer: str, deterministic: bool = False) -> GateDecision:
    decision = GateDecision(
        run_id=run_id, episodes_seen=episodes_seen, choice=record["choice"],
        reason=record["reason"], mf_version=record["mf_version"],
        mb_version=record["mb_version"], deterministic=deterministic, record=record,
        trainer=trainer)
    session.add(decision)
    session.flush()
    return decision


def list_decisions(session: Session, *, run_id: int, after: int, limit: int
                   ) -> list[GateDecision]:
    get_run(session, run_id=run_id)
    return list(session.scalars(select(GateDecision).where(
        GateDecision.run_id == run_id, GateDecision.id > after)
        .order_by(GateDecision.id).limit(limit)))


def add_metric(session: Session, *, run_id: int, episode_id: int | None, episodes_seen: int,
               learn_seconds: float, stats: dict[str, float]) -> None:
    session.add(LearnerMetric(run_id=run_id, episode_id=episode_id, episodes_seen=episodes_seen,
                              learn_seconds=learn_seconds, stats=stats))


def list_metrics(session: Session, *, run_id: int, after: int, limit: int
                 ) -> list[LearnerMetric]:
    get_run(session, run_id=run_id)
    return list(session.scalars(select(LearnerMetric).where(
        LearnerMetric.run_id == run_id, LearnerMetric.id > after)
        .order_by(LearnerMetric.id).limit(limit)))


# -- checkpoints -------------------------------------------------------------------------------
def add_checkpoint(session: Session, *, run_id: int, episodes_seen: int, data: bytes | None,
                   path: str | None, sha256: str, size: int, trainer: str, keep: int
                   ) -> list[str]:
    """Stores a checkpoint (bytes, or the path of a file) and drops all but the newest `keep`;
    returns the files of the dropped ones for the caller to delete after commit."""
    session.add(Checkpoint(run_id=run_id, episodes_seen=episodes_seen, data=data, path=path,
                           sha256=sha256, size=size, trainer=trainer))
    session.flush()
    old = session.execute(
        select(Checkpoint.id, Checkpoint.path).where(Checkpoint.run_id == run_id)
        .order_by(Checkpoint.id.desc()).offset(keep)).all()
    if old:
        session.execute(delete(Checkpoint).where(Checkpoint.id.in_([row.id for row in old])))
    return [row.path for row in old if row.path]


def latest_checkpoint(session: Session, *, run_id: int) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).where(Checkpoint.run_id == run_id)
                          .order_by(Checkpoint.id.desc()).limit(1))


def list_checkpoints(session: Session, *, run_id: int) -> list[Checkpoint]:
    get_run(session, run_id=run_id)
    return list(session.scalars(select(Checkpoint).options(defer(Checkpoint.data))
                                .where(Checkpoint.run_id == run_id).order_by(Checkpoint.id)))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
