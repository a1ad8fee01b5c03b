"""Runners' heartbeats and status: one row per (run, runner name), upserted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.models import RunnerStatus, utcnow
from server.repository.runs import get_run


def touch_runner(
    session: Session,
    *,
    run_id: int,
    name: str,
    status: str,
    seq: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Records that `name` was heard from now (an upsert: one statement, no race)."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "last_seen_at": now}
    if seq is not None:
        values["last_seq"] = seq
    if details is not None:
        values["details"] = details
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(RunnerStatus).values(
        run_id=run_id, name=name, first_seen_at=now, details=details or {},
        **{k: v for k, v in values.items() if k != "details"},
    )
    session.execute(statement.on_conflict_do_update(
        index_elements=[RunnerStatus.run_id, RunnerStatus.name], set_=values))


def heartbeat(
    session: Session, *, run_id: int, name: str, status: str, seq: int | None,
    details: dict[str, Any] | None,
) -> RunnerStatus:
    get_run(session, run_id=run_id)
    touch_runner(session, run_id=run_id, name=name, status=status, seq=seq, details=details)
    return session.scalars(select(RunnerStatus).where(
        RunnerStatus.run_id == run_id, RunnerStatus.name == name)
        .execution_options(populate_existing=True)).one()


def list_runners(session: Session, *, run_id: int) -> list[RunnerStatus]:
    get_run(session, run_id=run_id)
    return list(session.scalars(select(RunnerStatus).where(RunnerStatus.run_id == run_id)
                                .order_by(RunnerStatus.name)))
