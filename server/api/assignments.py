"""Assignments: what a runner runs next."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from server.api.params import AUTH_ERRORS, RunId
from server.deps import MetricsDep, RunnerDep, SettingsDep, TransactionDep
from server.repository.assignments import assign
from server.schemas import Assignment, AssignmentRequest, ErrorBody, NotReadyBody, RefusedBody

router = APIRouter(prefix="/api/v1/runs/{run_id}/assignments", tags=["assignments"])


@router.post(
    "",
    dependencies=[RunnerDep],
    responses={
        503: {"model": NotReadyBody,
              "description": "Not ready (sync mode: the trainer is still learning from this "
                             "runner's previous episode, or has made no decision yet). Retry "
                             "after `retry_after_ms` (also in the Retry-After header, seconds).",
              "headers": {"Retry-After": {"schema": {"type": "integer"},
                                          "description": "Seconds to wait."}}},
        409: {"model": RefusedBody, "description": "Refused: the run is not running."},
        404: {"model": ErrorBody, "description": "No such run."},
        **AUTH_ERRORS,
    },
)
async def create_assignment(run_id: RunId, body: AssignmentRequest, db: TransactionDep,
                            settings: SettingsDep, metrics: MetricsDep) -> Assignment:
    """The policy (kind, version, sha256) and gate decision the runner's episode `seq` runs."""
    # async, with the database work in one step (server/deps.py): every runner asks before
    # every episode, and its robot idles meanwhile.
    assignment = await db.run(_assignment, run_id=run_id, runner=body.runner, seq=body.seq,
                              retry_after_ms=settings.retry_after_ms)
    metrics.assignments.labels("assigned").inc()
    return assignment


def _assignment(session: Session, *, run_id: int, runner: str, seq: int,
                retry_after_ms: int) -> Assignment:
    view = assign(session, run_id=run_id, runner=runner, seq=seq, retry_after_ms=retry_after_ms)
    return Assignment(
        run_id=run_id, policy_kind=view.choice, policy_version=view.version,
        sha256=view.sha256,
        policy_url=f"/api/v1/runs/{run_id}/policies/{view.version}?kind={view.choice}",
        decision_id=view.decision_id, deterministic=view.deterministic,
        episode_steps=view.episode_steps, episodes_seen=view.episodes_seen,
        reason=view.reason,
    )
