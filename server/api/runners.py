"""Runners: heartbeats and status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from server.api.params import AUTH_ERRORS, RunId
from server.deps import ReaderDep, RunnerDep, SessionDep
from server.repository import runners as repo
from server.schemas import RUNNER_NAME, ErrorBody, HeartbeatIn, RunnerOut

router = APIRouter(prefix="/api/v1/runs/{run_id}/runners", tags=["runners"])
RunnerName = Annotated[str, Path(pattern=RUNNER_NAME)]


@router.post("/{name}/heartbeat", dependencies=[RunnerDep],
             responses={404: {"model": ErrorBody}, **AUTH_ERRORS})
def heartbeat(run_id: RunId, name: RunnerName, body: HeartbeatIn,
              session: SessionDep) -> RunnerOut:
    """A runner says it is alive, what it is doing and, optionally, its last seq."""
    return RunnerOut.model_validate(repo.heartbeat(
        session, run_id=run_id, name=name, status=body.status, seq=body.seq,
        details=body.details))


@router.get("", dependencies=[ReaderDep], responses={404: {"model": ErrorBody}})
def list_runners(run_id: RunId, session: SessionDep) -> list[RunnerOut]:
    return [RunnerOut.model_validate(r) for r in repo.list_runners(session, run_id=run_id)]
