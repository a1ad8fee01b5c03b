"""The dashboard's aggregate reads: a run's episodes as chart columns, and per-run summaries
for the runs list. Summaries only: the arrays are never loaded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.models import Episode, Run, RunnerStatus
from server.repository.runs import get_run


@dataclass
class SeriesColumns:
    id: list[int]
    returns: list[float]
    success: list[bool]
    policy_kind: list[str]


@dataclass
class Summary:
    run_id: int
    last_episode_id: int | None = None
    last_return: float | None = None
    last_success: bool | None = None
    last_policy_kind: str | None = None
    last_episode_at: datetime | None = None
    runners: int = 0
    last_heartbeat_at: datetime | None = None


def episode_series(session: Session, *, run_id: int, after: int, limit: int) -> SeriesColumns:
    get_run(session, run_id=run_id)
    rows = session.execute(
        select(Episode.id, Episode.episode_return, Episode.success, Episode.policy_kind)
        .where(Episode.run_id == run_id, Episode.id > after)
        .order_by(Episode.id).limit(limit)).all()
    return SeriesColumns(id=[r[0] for r in rows], returns=[r[1] for r in rows],
                         success=[bool(r[2]) for r in rows], policy_kind=[r[3] for r in rows])


def run_summaries(session: Session, *, limit: int, offset: int) -> list[Summary]:
    """One per run, in the order of `GET /api/v1/runs` with the same limit and offset."""
    ids = list(session.scalars(select(Run.id).order_by(Run.id).limit(limit).offset(offset)))
    if not ids:
        return []
    summaries = {run_id: Summary(run_id) for run_id in ids}
    newest = (select(func.max(Episode.id)).where(Episode.run_id.in_(ids))
              .group_by(Episode.run_id))
    for episode in session.execute(
            select(Episode.run_id, Episode.id, Episode.episode_return, Episode.success,
                   Episode.policy_kind, Episode.created_at)
            .where(Episode.id.in_(newest))):
        summary = summaries[episode.run_id]
        summary.last_episode_id, summary.last_return = episode.id, episode.episode_return
        summary.last_success, summary.last_policy_kind = bool(episode.success), episode.policy_kind
        summary.last_episode_at = episode.created_at
    for run_id, count, last_seen in session.execute(
            select(RunnerStatus.run_id, func.count(RunnerStatus.id),
                   func.max(RunnerStatus.last_seen_at))
            .where(RunnerStatus.run_id.in_(ids)).group_by(RunnerStatus.run_id)):
        summaries[run_id].runners, summaries[run_id].last_heartbeat_at = count, last_seen
    return [summaries[run_id] for run_id in ids]
