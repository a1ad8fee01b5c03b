"""Trainer leases: which trainer trains a run. One row per run (`trainer_leases`).

A trainer claims a running (or stopping) run whose lease is free or expired, and from then on
every write it makes goes through `fence`, which renews the lease only while the trainer still
owns it with the generation it claimed. On PostgreSQL the claim is `SELECT ... FOR UPDATE SKIP
LOCKED` (trainers never wait on each other's rows); on SQLite, where writes are serialised, it is
a compare-and-set UPDATE. Either way two trainers never both hold a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from server.errors import LeaseLost
from server.models import Run, TrainerLease

TRAINABLE = ("running", "stopping")


@dataclass(frozen=True)
class Claim:
    run_id: int
    owner: str
    generation: int


def _claimable(now: float):
    return (
        select(TrainerLease)
        .join(Run, Run.id == TrainerLease.run_id)
        .where(Run.status.in_(TRAINABLE),
               or_(TrainerLease.owner.is_(None), TrainerLease.expires_at < now))
        .order_by(TrainerLease.run_id)
    )


def claim_run(session: Session, *, owner: str, now: float, ttl_s: float,
              exclude: frozenset[int] = frozenset()) -> Claim | None:
    """Takes one free or expired run for `owner`; None when there is none."""
    query = _claimable(now)
    if exclude:
        query = query.where(TrainerLease.run_id.not_in(exclude))
    if session.get_bind().dialect.name == "postgresql":
        lease = session.scalar(query.limit(1).with_for_update(skip_locked=True, of=TrainerLease))
        if lease is None:
            return None
        lease.owner, lease.generation = owner, lease.generation + 1
        lease.expires_at, lease.heartbeat_at = now + ttl_s, now
        session.flush()
        return Claim(lease.run_id, owner, lease.generation)
    for lease in session.scalars(query.limit(8)).all():
        taken = session.execute(
            update(TrainerLease)
            .where(TrainerLease.run_id == lease.run_id,
                   TrainerLease.generation == lease.generation,
                   or_(TrainerLease.owner.is_(None), TrainerLease.expires_at < now))
            .values(owner=owner, generation=lease.generation + 1, expires_at=now + ttl_s,
                    heartbeat_at=now)
            .execution_options(synchronize_session=False))
        if taken.rowcount == 1:
            return Claim(lease.run_id, owner, lease.generation + 1)
    return None


def fence(session: Session, *, claim: Claim, now: float, ttl_s: float) -> None:
    """Renews the lease if `claim` still holds it, else raises LeaseLost. Call it first in every
    transaction that writes the trainer's results: on PostgreSQL the UPDATE also locks the lease
    row until commit, so no one can take the run over in between."""
    renewed = session.execute(
        update(TrainerLease)
        .where(TrainerLease.run_id == claim.run_id, TrainerLease.owner == claim.owner,
               TrainerLease.generation == claim.generation)
        .values(expires_at=now + ttl_s, heartbeat_at=now)
        .execution_options(synchronize_session=False))
    if renewed.rowcount != 1:
        raise LeaseLost(f"trainer {claim.owner} lost the lease of run {claim.run_id}")


def release(session: Session, *, claim: Claim) -> bool:
    released = session.execute(
        update(TrainerLease)
        .where(TrainerLease.run_id == claim.run_id, TrainerLease.owner == claim.owner,
               TrainerLease.generation == claim.generation)
        .values(owner=None, expires_at=None)
        .execution_options(synchronize_session=False))
    return released.rowcount == 1
