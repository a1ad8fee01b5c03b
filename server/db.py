"""Engine and sessions. SQLite gets WAL, a busy timeout and foreign keys; PostgreSQL a pool, and
for the API's hot routes an asyncio engine beside it (`make_async_engine`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def make_async_engine(url: str, *, pool_size: int = 20) -> AsyncEngine | None:
    """PostgreSQL through psycopg's asyncio interface, for routes that await their database work
    on the event loop (`server.deps.Transaction`): 16 uploads in flight then cost no worker
    threads taking turns at the GIL (measured in docs/BENCHMARKS.md, ingest). None for SQLite,
    whose one writer at a time gains nothing from it; those routes use worker threads.
    Its connections belong to the event loop that opens them: make it inside that loop.

    Up to `pool_size` connections, opened as needed and then kept; no overflow. A pool smaller
    than the uploads in flight closes each overflow connection when it is returned and opens a
    new one for the next request (a PostgreSQL backend started per ~20 uploads, 16 clients):
    with 10 (+10 overflow) it made 0.6-0.8x the uploads/s, at 1.7-1.9x the p99. Past
    `pool_size` requests wait for a connection. Beside the sync engine's 2 × 20, an API process
    holds at most 60 (PostgreSQL allows 100 by default, for every API process and trainer)."""
    if url.startswith("sqlite"):
        return None
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)


def make_async_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy's "begin" event open the transactions (pysqlite's own BEGIN is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; the busy timeout makes writers queue.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(connection) -> None:
    # A deferred transaction that reads and then writes fails at once (SQLITE_BUSY, no busy
    # wait) when another connection wrote in between; taking the write lock up front makes
    # concurrent writers (API threads, the trainer) queue on the busy timeout instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception."""
    with factory() as session, session.begin():
        yield session
