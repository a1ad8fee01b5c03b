"""Runner events: a runner reports a safety stop, an aborted episode, a failed reset; readers
(the dashboard) page through them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from server.api.params import AUTH_ERRORS, After, Limit, RunId
from server.deps import ReaderDep, RunnerDep, SessionDep
from server.repository import events as repo
from server.schemas import (
    EVENT_KIND,
    RUNNER_NAME,
    ErrorBody,
    RunnerEventIn,
    RunnerEventOut,
    RunnerEventPage,
)

router = APIRouter(prefix="/api/v1/runs/{run_id}", tags=["runner events"])
RunnerName = Annotated[str, Path(pattern=RUNNER_NAME)]


@router.post("/runners/{name}/events", status_code=201, dependencies=[RunnerDep],
             responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}, **AUTH_ERRORS})
def add_event(run_id: RunId, name: RunnerName, body: RunnerEventIn,
              session: SessionDep) -> RunnerEventOut:
    """Records one event of runner `name`, e.g. kind `safety_stop` with the cause."""
    return RunnerEventOut.model_validate(repo.add_event(
        session, run_id=run_id, runner=name, kind=body.kind, message=body.message,
        details=body.details))


@router.get("/events", dependencies=[ReaderDep], responses={404: {"model": ErrorBody}})
def list_events(
    run_id: RunId, session: SessionDep, after: After = 0, limit: Limit = 100,
    kind: Annotated[str | None, Query(pattern=EVENT_KIND)] = None,
    runner: Annotated[str | None, Query(pattern=RUNNER_NAME)] = None,
) -> RunnerEventPage:
    """Events in the order they arrived; page with `after` = the previous page's next_after."""
    items = repo.list_events(session, run_id=run_id, after=after, limit=limit, kind=kind,
                             runner=runner)
    return RunnerEventPage(items=[RunnerEventOut.model_validate(e) for e in items],
                           next_after=items[-1].id if len(items) == limit else None)
