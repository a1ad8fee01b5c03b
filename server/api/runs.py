"""Runs: create, list, get, start, stop, delete."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter, BackgroundTasks, Response

from server.api.params import AUTH_ERRORS, Limit, Offset, RunId
from server.deps import AdminDep, ReaderDep, SessionDep
from server.repository import runs as repo
from server.schemas import ErrorBody, RunCreate, RunDetail, RunOut, TrainerInfo

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
_ERRORS = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}}
_ADMIN_ERRORS = {**_ERRORS, **AUTH_ERRORS}


def _out(view: repo.RunView, model: type[RunOut] = RunOut) -> RunOut:
    lease = view.lease
    trainer = None
    if lease is not None and lease.owner is not None:
        trainer = TrainerInfo(owner=lease.owner, generation=lease.generation,
                              expires_at=lease.expires_at or 0.0)
    return model.model_validate(view.run).model_copy(update={
        "episodes": view.episodes, "episodes_learned": view.episodes_learned, "trainer": trainer})


@router.post("", status_code=201, dependencies=[AdminDep],
             responses={409: {"model": ErrorBody}, 422: {"model": ErrorBody}, **AUTH_ERRORS})
def create_run(body: RunCreate, session: SessionDep) -> RunDetail:
    """Creates a run (status `created`); its learner config is the preset plus overrides."""
    run = repo.create_run(session, name=body.name, algorithm=body.algorithm,
                          preset=body.preset, mode=body.mode, overrides=body.overrides,
                          prior=body.prior.model_dump() if body.prior else None)
    return _out(repo.RunView(run), RunDetail)


@router.get("", dependencies=[ReaderDep])
def list_runs(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> list[RunOut]:
    return [_out(view) for view in repo.list_runs(session, limit=limit, offset=offset)]


@router.get("/{run_id}", dependencies=[ReaderDep], responses=_ERRORS)
def get_run(run_id: RunId, session: SessionDep) -> RunDetail:
    return _out(repo.get_run_view(session, run_id=run_id), RunDetail)


@router.post("/{run_id}/start", dependencies=[AdminDep], responses=_ADMIN_ERRORS)
def start_run(run_id: RunId, session: SessionDep) -> RunOut:
    """Sets the run `running`; a trainer picks it up (resuming from its last checkpoint)."""
    repo.start_run(session, run_id=run_id)
    return _out(repo.get_run_view(session, run_id=run_id))


@router.post("/{run_id}/stop", dependencies=[AdminDep], responses=_ADMIN_ERRORS)
def stop_run(run_id: RunId, session: SessionDep) -> RunOut:
    """`stopping` while a trainer ends its step after the episode it is learning from and
    checkpoints, then `stopped`; `stopped` at once when no trainer holds the run. The run
    stays resumable."""
    repo.stop_run(session, run_id=run_id, now=time.time())
    return _out(repo.get_run_view(session, run_id=run_id))


@router.delete("/{run_id}", status_code=204, dependencies=[AdminDep],
                responses=_ADMIN_ERRORS)
def delete_run(run_id: RunId, session: SessionDep, background: BackgroundTasks) -> Response:
    """Deletes a stopped run and all it holds (episodes, policies, checkpoints...)."""
    files = repo.delete_run(session, run_id=run_id)
    # Background tasks run after the transaction has committed.
    background.add_task(_remove_files, files)
    return Response(status_code=204)


def _remove_files(paths: list[str]) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)
