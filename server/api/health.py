"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from server import migrate
from server.deps import MetricsDep, ReaderDep
from server.errors import SchemaOutOfDate
from server.schemas import Health

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> Health:
    """The process answers (liveness)."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Health}})
def readyz(request: Request) -> JSONResponse:
    """The database answers at the newest migration, and the trainer (if enabled) runs."""
    detail: dict[str, str] = {}
    try:
        detail["schema"] = migrate.check_schema(request.app.state.engine)
        detail["database"] = "ok"
    except SchemaOutOfDate as exc:
        detail["database"] = f"not ready: {exc}"
    except SQLAlchemyError as exc:  # the message may hold SQL or connection details: not shown
        detail["database"] = f"not ready: {type(exc).__name__} (see the service log)"
        log.warning("readiness: database check failed: %s", exc)
    trainer = request.app.state.trainer
    if trainer is not None:
        detail["trainer"] = "running" if trainer.alive else "not running"
    ready = detail["database"] == "ok" and detail.get("trainer", "running") == "running"
    body = Health(status="ready" if ready else "not_ready", detail=detail)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", dependencies=[ReaderDep], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
