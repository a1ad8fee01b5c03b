"""The routes' dependencies, as `Annotated` aliases: settings, a database session (one
transaction per request) and the three kinds of access.

The ones that only look at the request are `async`: they run on the event loop, without the
thread hop a plain `def` dependency costs. The session is a plain `def`: its commit blocks.
A hot `async` route takes `TransactionDep` instead: all its database work in one hop."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from server.db import transaction
from server.metrics import ServiceMetrics
from server.settings import Settings

T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="Admin or runner token from the settings.")
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{7,127}$")


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed before the response is sent, rolled back when
    the route raises."""
    with request.app.state.session_factory() as session, session.begin():
        yield session


class Transaction:
    """Runs `work(session, **kwargs)` in one transaction, committed before the response is sent
    and rolled back when it raises, like `SessionDep`, for a hot `async` route.

    On PostgreSQL the work runs on the event loop through the asyncio engine (`AsyncSession.
    run_sync`: the same sync repository code, its statements awaited): no thread at all. Worker
    threads taking turns at the GIL had cost 1.1-1.4 ms of system CPU per upload with 16 in
    flight on two cores, against 0.3 ms this way. On SQLite (or before the app's start-up has
    made the asyncio engine) it runs on a worker thread: one hop, where a sync route with
    `SessionDep` costs four (the session's start and end, the route, FastAPI's check of its
    result)."""

    def __init__(self, factory: sessionmaker[Session],
                 async_factory: async_sessionmaker[AsyncSession] | None = None):
        self.factory, self.async_factory = factory, async_factory

    async def run(self, work: Callable[..., T], /, **kwargs: Any) -> T:
        if self.async_factory is None:
            return await run_in_threadpool(self._run, work, kwargs)
        async with self.async_factory() as session, session.begin():
            return await session.run_sync(work, **kwargs)

    def _run(self, work: Callable[..., T], kwargs: dict[str, Any]) -> T:
        with transaction(self.factory) as session:
            return work(session, **kwargs)


async def get_transaction(request: Request) -> Transaction:
    state = request.app.state  # create_app sets both; the asyncio one while it runs
    return Transaction(state.session_factory, state.async_session_factory)


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
TransactionDep = Annotated[Transaction, Depends(get_transaction)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _matches(credentials: HTTPAuthorizationCredentials | None, *tokens: str) -> bool:
    if credentials is None:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})
    given = credentials.credentials.encode()
    # Every comparison runs, in constant time, whatever matched first.
    return any([secrets.compare_digest(given, token.encode()) for token in tokens])


async def require_admin(settings: SettingsDep, credentials: Credentials) -> None:
    if not _matches(credentials, settings.admin_token.get_secret_value()):
        raise HTTPException(403, "this needs the admin token")


async def require_runner(settings: SettingsDep, credentials: Credentials) -> None:
    """Runner endpoints: the runner token (the admin token works too)."""
    tokens = (settings.runner_token.get_secret_value(), settings.admin_token.get_secret_value())
    if not _matches(credentials, *tokens):
        raise HTTPException(403, "this needs the runner token")


async def require_reader(settings: SettingsDep, credentials: Credentials) -> None:
    """Read-only endpoints: open, unless DCLAW_READ_REQUIRES_TOKEN is set."""
    if not settings.read_requires_token:
        return
    tokens = (settings.runner_token.get_secret_value(), settings.admin_token.get_secret_value())
    if not _matches(credentials, *tokens):
        raise HTTPException(403, "reading needs the admin or runner token on this service")


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(alias="Idempotency-Key",
               description="8-128 characters of letters, digits and _.:- (a UUID works); a retry "
                           "with the same key gets the first upload's result."),
    ] = None,
) -> str:
    if key is None:
        raise HTTPException(400, "missing Idempotency-Key header: every upload needs one")
    if not IDEMPOTENCY_KEY.match(key):
        raise HTTPException(400, "malformed Idempotency-Key: use 8-128 characters of letters, "
                                 "digits and _.:- starting with a letter or digit (a UUID works)")
    return key


AdminDep = Depends(require_admin)
RunnerDep = Depends(require_runner)
ReaderDep = Depends(require_reader)
IdempotencyKey = Annotated[str, Depends(idempotency_key)]
