"""Shared fixtures. The PostgreSQL URL for integration tests comes from DCLAW_TEST_DATABASE_URL."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def dclaw_cmd() -> list[str]:
    """The installed `dclaw` console script of the environment running the tests."""
    exe = VENV_BIN / "dclaw"
    assert exe.exists(), f"the dclaw console script is not installed in {VENV_BIN}"
    return [str(exe)]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("DCLAW_TEST_DATABASE_URL")
    if not url:
        pytest.fail("DCLAW_TEST_DATABASE_URL is not set: .ci/run exports it (PostgreSQL on :5432)")
    return url
