"""The service's settings: one pydantic-settings object, read from `DCLAW_*` variables and `.env`.

Build it with `get_settings()` (or `Settings(...)` in tests); nothing here is created at import
time. Outside dev mode the settings refuse the default tokens, so a service that was never given
real secrets does not start.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ADMIN_TOKEN = "dev-admin-token"
DEFAULT_RUNNER_TOKEN = "dev-runner-token"
MIN_TOKEN_LENGTH = 16


class InsecureSettingsError(ValueError):
    """A default or weak secret outside dev mode."""


def _default_trainer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class DatabaseSettings(BaseSettings):
    """What `dclaw db ...` needs: only the database (no tokens)."""

    model_config = SettingsConfigDict(
        env_prefix="DCLAW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        "sqlite:///./dclaw.db",
        description="SQLAlchemy URL: a SQLite file (embedded default) or postgresql://...",
    )

    @field_validator("database_url")
    @classmethod
    def _driver(cls, url: str) -> str:
        # psycopg 3 is the driver we ship; plain postgresql:// URLs mean it.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url.removeprefix(prefix)
        return url


class Settings(DatabaseSettings):
    """Every knob of `dclaw serve` and `dclaw trainer` (environment: `DCLAW_<FIELD>`)."""

    admin_token: SecretStr = Field(
        SecretStr(DEFAULT_ADMIN_TOKEN), description="Bearer token for create/start/stop/delete."
    )
    runner_token: SecretStr = Field(
        SecretStr(DEFAULT_RUNNER_TOKEN),
        description="Bearer token for assignments, episode uploads and heartbeats.",
    )
    dev: bool = Field(False, description="Dev mode: the default tokens are allowed.")
    read_requires_token: bool = Field(
        False, description="Read-only endpoints need the admin or runner token too."
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    trainer: bool = Field(True, description="`dclaw serve` runs a trainer process as well.")
    trainer_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port of the trainer process's Prometheus metrics "
        "(the API's are at /metrics); unset: not served.")
    trainer_nice: int = Field(
        10, ge=0, le=19, description="Niceness of the trainer process `dclaw serve` starts: on "
        "a shared machine the API (and a runner) get the CPU first; 0: equal footing.")
    trainer_slots: int = Field(1, ge=1, description="Runs one trainer process trains at once.")
    trainer_name: str = Field(default_factory=_default_trainer_name, min_length=1)
    device: str = Field("auto", description="Torch device of the trainer: auto, cpu, cuda[:N].")
    torch_threads: int | None = Field(
        None, ge=1, description="torch.set_num_threads for the trainer; unset: torch's default.")
    checkpoint_dir: Path | None = Field(
        None,
        description="Write checkpoints as files here (storage shared by all trainers); "
        "unset: checkpoints are stored in the database.",
    )
    checkpoint_every: int = Field(5, ge=1, description="Episodes learned between checkpoints.")
    checkpoints_kept: int = Field(2, ge=1, description="Newest checkpoints kept per run.")
    policies_kept: int = Field(
        20, ge=2, description="Newest policy versions per kind whose documents are kept; older "
        "ones keep their record (late uploads may name them) but not their bytes.")
    trainer_batch_episodes: int = Field(
        16, ge=1, description="Most episodes a trainer learns before its next gate decision.")
    lease_ttl_s: float = Field(30.0, gt=0, description="A trainer lease expires after this.")
    trainer_poll_s: float = Field(0.1, gt=0, description="How often a trainer looks for work.")
    retry_after_ms: int = Field(200, ge=1, description="Advised wait of a 'not ready' answer.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Larger request bodies get 413.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty: CORS closed."
    )

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.dev:
            return self
        problems = []
        for name, secret, default in (
            ("DCLAW_ADMIN_TOKEN", self.admin_token, DEFAULT_ADMIN_TOKEN),
            ("DCLAW_RUNNER_TOKEN", self.runner_token, DEFAULT_RUNNER_TOKEN),
        ):
            value = secret.get_secret_value()
            if value == default:
                problems.append(f"{name} is the default token")
            elif len(value) < MIN_TOKEN_LENGTH:
                problems.append(f"{name} is shorter than {MIN_TOKEN_LENGTH} characters")
        if self.admin_token.get_secret_value() == self.runner_token.get_secret_value():
            problems.append("DCLAW_ADMIN_TOKEN and DCLAW_RUNNER_TOKEN are the same")
        if problems:
            raise InsecureSettingsError(
                "refusing to start outside dev mode: " + "; ".join(problems)
                + " (set real tokens, or DCLAW_DEV=1 on a development machine)"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment and `.env`, with explicit overrides (CLI options, tests)."""
    return Settings(**overrides)


def get_database_settings(**overrides: Any) -> DatabaseSettings:
    return DatabaseSettings(**overrides)
