"""Runner events: append-only reports of safety stops, aborted episodes, failed resets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.errors import NotFound
from server.models import RunnerEvent
from server.repository.runs import get_run


def add_event(session: Session, *, run_id: int, runner: str, kind: str, message: str,
              details: dict[str, Any]) -> RunnerEvent:
    get_run(session, run_id=run_id)
    event = RunnerEvent(run_id=run_id, runner=runner, kind=kind, message=message,
                        details=details)
    session.add(event)
    try:
        session.flush()
    except IntegrityError as exc:  # the run was deleted meanwhile
        raise NotFound(f"no run with id {run_id}") from exc
    return event


def list_events(session: Session, *, run_id: int, after: int, limit: int,
                kind: str | None = None, runner: str | None = None) -> list[RunnerEvent]:
    get_run(session, run_id=run_id)
    query = select(RunnerEvent).where(RunnerEvent.run_id == run_id, RunnerEvent.id > after)
    if kind is not None:
        query = query.where(RunnerEvent.kind == kind)
    if runner is not None:
        query = query.where(RunnerEvent.runner == runner)
    return list(session.scalars(query.order_by(RunnerEvent.id).limit(limit)))
