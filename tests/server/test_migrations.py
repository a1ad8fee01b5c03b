"""The Alembic migrations on SQLite and PostgreSQL: upgrade from empty, agree with the models,
downgrade to empty; the service refuses an old schema and names the command that fixes it."""

import subprocess

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from server_testkit import make_settings

from server import migrate
from server.app import create_app
from server.db import make_engine
from server.errors import SchemaOutOfDate
from server.models import Base

TABLES = {"runs", "episodes", "policy_snapshots", "gate_decisions", "learner_metrics",
          "runners", "trainer_leases", "checkpoints", "runner_events"}


def _tables(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_matches_models_and_downgrades(empty_db):
    engine = make_engine(empty_db, pool_size=1)
    try:
        assert _tables(engine) == set()
        assert migrate.current_revision(engine) is None
        migrate.upgrade(empty_db)
        assert _tables(engine) == TABLES
        assert migrate.check_schema(engine) == migrate.head_revision()
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        migrate.downgrade(empty_db, "base")
        assert _tables(engine) == set()
        migrate.upgrade(empty_db)  # and up again
        assert _tables(engine) == TABLES
    finally:
        engine.dispose()


def test_service_refuses_a_database_behind_the_newest_migration(empty_db):
    engine = make_engine(empty_db, pool_size=1)
    with pytest.raises(SchemaOutOfDate, match="dclaw db upgrade"):
        migrate.check_schema(engine)
    engine.dispose()
    app = create_app(make_settings(empty_db))
    with pytest.raises(SchemaOutOfDate, match="dclaw db upgrade"), TestClient(app):
        pass


def test_dclaw_db_commands(dclaw_cmd, sqlite_url, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DCLAW_DATABASE_URL": sqlite_url}

    def dclaw(*args):
        return subprocess.run([*dclaw_cmd, "db", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    assert "behind" in dclaw("current").stdout
    done = dclaw("upgrade")
    assert done.returncode == 0, done.stderr
    assert f"revision {migrate.head_revision()}" in done.stdout
    assert "up to date" in dclaw("current").stdout
    assert dclaw("downgrade", "base").returncode == 0
    assert "revision None" in dclaw("current").stdout
