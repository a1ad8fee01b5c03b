"""Settings: DCLAW_* variables, no default secret outside dev mode, `dclaw serve` refuses."""

import subprocess

import pytest
from pydantic import ValidationError

from server.settings import DEFAULT_ADMIN_TOKEN, Settings


def test_defaults_are_refused_outside_dev_mode(monkeypatch):
    for name in ("DCLAW_ADMIN_TOKEN", "DCLAW_RUNNER_TOKEN", "DCLAW_DEV"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="DCLAW_ADMIN_TOKEN is the default token"):
        Settings(_env_file=None)
    with pytest.raises(ValidationError, match="shorter than"):
        Settings(_env_file=None, admin_token="short", runner_token="r" * 20)
    with pytest.raises(ValidationError, match="the same"):
        Settings(_env_file=None, admin_token="x" * 20, runner_token="x" * 20)
    dev = Settings(_env_file=None, dev=True)
    assert dev.admin_token.get_secret_value() == DEFAULT_ADMIN_TOKEN


def test_environment_and_postgres_driver(monkeypatch):
    monkeypatch.setenv("DCLAW_DATABASE_URL", "postgresql://u@db:5432/dclaw")
    monkeypatch.setenv("DCLAW_ADMIN_TOKEN", "a" * 32)
    monkeypatch.setenv("DCLAW_RUNNER_TOKEN", "r" * 32)
    monkeypatch.setenv("DCLAW_CORS_ORIGINS", '["https://lab.example"]')
    monkeypatch.setenv("DCLAW_TRAINER", "false")
    settings = Settings(_env_file=None)
    assert settings.database_url == "postgresql+psycopg://u@db:5432/dclaw"
    assert settings.cors_origins == ["https://lab.example"]
    assert settings.trainer is False
    assert settings.port == 8000 and settings.cors_origins != []
    assert "aaaa" not in repr(settings)  # secrets stay out of logs


def test_dclaw_serve_refuses_default_tokens(dclaw_cmd, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DCLAW_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    done = subprocess.run([*dclaw_cmd, "serve", "--port", "1"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "refusing to start outside dev mode" in done.stderr
    assert "DCLAW_ADMIN_TOKEN is the default token" in done.stderr


def test_dclaw_serve_refuses_an_unmigrated_database(dclaw_cmd, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DCLAW_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
           "DCLAW_DEV": "1"}
    done = subprocess.run([*dclaw_cmd, "serve", "--port", "1", "--no-trainer"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "dclaw db upgrade" in done.stderr
