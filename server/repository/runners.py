"""Runners' heartbeats and status: one row per (run, runner name), upserted."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
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
    statement = _upsert(session.get_bind().dialect.name, seq is not None, details is not None)
    session.execute(statement, {"run_id": run_id, "name": name, "status": status,
                                "now": utcnow(), "seq": seq, "details": details or {}})


@cache
def _upsert(dialect: str, with_seq: bool, with_details: bool):
    """The upsert for one shape of update, built once (every assignment runs it): a new row
    takes every value; an existing one keeps its last seq and details unless given."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = RunnerStatus.__table__
    # Typed like their columns, in the insert and in the update alike.
    run_id, name, status, now, seq, details = (
        bindparam(key, type_=table.c[column].type) for key, column in (
            ("run_id", "run_id"), ("name", "name"), ("status", "status"),
            ("now", "last_seen_at"), ("seq", "last_seq"), ("details", "details")))
    update = {"status": status, "last_seen_at": now}
    if with_seq:
        update["last_seq"] = seq
    if with_details:
        update["details"] = details
    statement = insert(table).values(run_id=run_id, name=name, status=status, last_seq=seq,
                                     details=details, first_seen_at=now, last_seen_at=now)
    return statement.on_conflict_do_update(
        index_elements=[table.c.run_id, table.c.name], set_=update)


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
