"""The FastAPI application factory: routers, error mapping, body limit, CORS, metrics, and the
life cycle of the trainer process beside the API."""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import dashboard, migrate
from server.api import assignments, episodes, events, health, learning, policies, runners, runs
from server.dashboard import api as dashboard_api
from server.db import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from server.errors import NotReady, Refused, ServiceError
from server.metrics import RequestMetricsMiddleware, ServiceMetrics
from server.settings import Settings, get_settings
from server.trainer.process import TrainerProcess

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, check_schema: bool = True) -> FastAPI:
    """The service. With `settings.trainer` a `dclaw trainer` child process learns beside it
    (never under this process's GIL); it starts and stops with the app."""
    settings = settings or get_settings()
    if settings.dev:
        log.warning("dev mode: default tokens are accepted; never expose this service")
    engine = make_engine(settings.database_url)
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if check_schema:
            migrate.check_schema(engine)  # refuses to start on an old schema
        app.state.trainer = None
        # Made here, on the loop that serves: asyncio connections belong to their loop.
        async_engine = make_async_engine(settings.database_url)
        if async_engine is not None:
            app.state.async_session_factory = make_async_session_factory(async_engine)
        if settings.trainer:
            app.state.trainer = TrainerProcess(settings)
            app.state.trainer.start()
        # The ~160k objects alive after start-up (SQLAlchemy, pydantic) stay alive: move
        # them out of the collector's view, or every full collection stalls all requests for
        # 70-90 ms while freeing nothing (measured in docs/BENCHMARKS.md, ingest).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if app.state.trainer is not None:
                await run_in_threadpool(app.state.trainer.stop)
            app.state.async_session_factory = None
            if async_engine is not None:
                await async_engine.dispose()
            engine.dispose()

    app = FastAPI(
        title="D'Claw Unified RL learner service",
        version="1",
        description="Runs, assignments, policies, episodes, gate history and learner metrics "
        "for Unified RL on the ROBEL D'Claw. Errors are JSON `{\"detail\": ...}`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.async_session_factory = None  # set for PostgreSQL while the app runs (lifespan)
    app.state.metrics = metrics
    app.state.trainer = None
    # The dashboard's aggregates first: their literal paths would otherwise be taken for ids.
    for router in (dashboard_api.router, runs.router, assignments.router, policies.router,
                   episodes.router, learning.gate_router, learning.metrics_router,
                   learning.checkpoints_router, runners.router, events.router, health.router,
                   dashboard.router):
        app.include_router(router)
    _add_error_handlers(app, metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app


def _add_error_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    @app.exception_handler(NotReady)
    async def not_ready(_: Request, exc: NotReady) -> JSONResponse:
        metrics.assignments.labels("not_ready").inc()
        return JSONResponse(
            {"status": "not_ready", "retry_after_ms": exc.retry_after_ms, "detail": str(exc)},
            status_code=503,
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_ms / 1000)))})

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        metrics.assignments.labels("refused").inc()
        return JSONResponse({"status": "refused", "detail": str(exc)}, status_code=409)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Without the offending input: it may be NaN (not JSON) or a large array.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
                  for e in exc.errors()[:20]]
        return JSONResponse({"detail": errors}, status_code=422)


class BodyLimitMiddleware:
    """413 for request bodies over the limit, by Content-Length or by counting the stream."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body larger than {self.max_bytes} bytes (DCLAW_MAX_BODY_BYTES)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": too_large}, status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, counting_receive, send)
