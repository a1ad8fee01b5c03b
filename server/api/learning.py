"""What the trainer produced: gate history, learner metrics, checkpoints."""

from __future__ import annotations

from fastapi import APIRouter

from server.api.params import After, Limit, RunId
from server.deps import ReaderDep, SessionDep
from server.repository import learning as repo
from server.schemas import CheckpointOut, ErrorBody, GateDecisionOut, LearnerMetricOut

_NOT_FOUND = {404: {"model": ErrorBody}}
gate_router = APIRouter(prefix="/api/v1/runs/{run_id}/gate", tags=["gate"],
                        dependencies=[ReaderDep])
metrics_router = APIRouter(prefix="/api/v1/runs/{run_id}/metrics", tags=["learner metrics"],
                           dependencies=[ReaderDep])
checkpoints_router = APIRouter(prefix="/api/v1/runs/{run_id}/checkpoints", tags=["checkpoints"],
                               dependencies=[ReaderDep])


@gate_router.get("", responses=_NOT_FOUND)
def gate_history(run_id: RunId, session: SessionDep, after: After = 0,
                 limit: Limit = 100) -> list[GateDecisionOut]:
    """Gate decisions in order: choice, reason, the K pairs of J estimates, policy versions."""
    return [GateDecisionOut.model_validate(d)
            for d in repo.list_decisions(session, run_id=run_id, after=after, limit=limit)]


@metrics_router.get("", responses=_NOT_FOUND)
def learner_metrics(run_id: RunId, session: SessionDep, after: After = 0,
                    limit: Limit = 100) -> list[LearnerMetricOut]:
    """One row per learnt episode: losses, time/*_s and rate/*_per_s (updates per second)."""
    return [LearnerMetricOut.model_validate(m)
            for m in repo.list_metrics(session, run_id=run_id, after=after, limit=limit)]


@checkpoints_router.get("", responses=_NOT_FOUND)
def list_checkpoints(run_id: RunId, session: SessionDep) -> list[CheckpointOut]:
    return [CheckpointOut.model_validate(c)
            for c in repo.list_checkpoints(session, run_id=run_id)]
