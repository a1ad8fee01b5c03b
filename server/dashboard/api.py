"""Read endpoints the dashboard needs beyond the resource routers: a run's episodes as chart
columns (all of them, in few requests) and per-run summaries for the runs list.

Register this router before `server.api.runs` and `server.api.episodes`: its literal paths
(`/runs/summaries`, `/episodes/series`) would otherwise be taken for ids there."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from server.api.params import After, Limit, Offset, RunId
from server.dashboard import queries
from server.deps import ReaderDep, SessionDep
from server.schemas import EpisodeSeries, ErrorBody, RunSummary

router = APIRouter(prefix="/api/v1/runs", tags=["dashboard"], dependencies=[ReaderDep])
SeriesLimit = Annotated[int, Query(ge=1, le=100_000, description="Episodes per answer.")]


@router.get("/summaries")
def run_summaries(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> list[RunSummary]:
    """Per run (same order and paging as `GET /api/v1/runs`): its newest episode's return and
    success, how many runners it has seen and when one was last heard from."""
    return [RunSummary.model_validate(s, from_attributes=True)
            for s in queries.run_summaries(session, limit=limit, offset=offset)]


@router.get("/{run_id}/episodes/series", responses={404: {"model": ErrorBody}})
def episode_series(run_id: RunId, session: SessionDep, after: After = 0,
                   limit: SeriesLimit = 20_000) -> EpisodeSeries:
    """Episode id, return, success and policy kind as columns, in upload order; poll with
    `after` = the last id seen to get only the new ones."""
    columns = queries.episode_series(session, run_id=run_id, after=after, limit=limit)
    return EpisodeSeries(id=columns.id, returns=columns.returns, success=columns.success,
                         policy_kind=columns.policy_kind,
                         next_after=columns.id[-1] if len(columns.id) == limit else None)
