"""Alembic from Python: `dclaw db upgrade/downgrade/current`, and the start-up check that the
database is at the newest migration."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from server.errors import SchemaOutOfDate

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str) -> Config:
    if not (MIGRATIONS / "env.py").exists():
        raise FileNotFoundError(f"no migrations at {MIGRATIONS}: install the project editable "
                                "(pip install -e '.[server]') from its repository")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a URL (escaped password) must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> str:
    """The database's revision if it is the newest; else SchemaOutOfDate naming the fix."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = "empty (no migration applied)" if current is None else f"at revision {current}"
        raise SchemaOutOfDate(
            f"the database {engine.url.render_as_string(hide_password=True)} is {where}; "
            f"this code needs revision {head}. Run `dclaw db upgrade` (same DCLAW_DATABASE_URL) "
            "and start again.")
    return current
