"""Fixtures for the service tests: a migrated database per test (a temp SQLite file, or a fresh
PostgreSQL schema dropped afterwards), settings and an in-process client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from server_testkit import make_settings, pg_schema_url

from server import migrate
from server.app import create_app
from server.db import make_engine, make_session_factory
from server.settings import Settings


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'dclaw.db'}"


@pytest.fixture
def pg_url(postgres_url) -> Iterator[str]:
    """An empty PostgreSQL schema of its own, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(Settings(database_url=postgres_url, dev=True).database_url, pool_size=1)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_schema_url(postgres_url, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request) -> str:
    """An empty database of each kind (no migration applied)."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def db_url(empty_db) -> str:
    """A database of each kind at the newest migration."""
    migrate.upgrade(empty_db)
    return empty_db


@pytest.fixture
def settings(db_url) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def factory(settings):
    engine = make_engine(settings.database_url, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()
