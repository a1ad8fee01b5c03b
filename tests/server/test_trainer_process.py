"""`dclaw serve`'s trainer runs as a child process (never under the API's GIL): it trains, it
comes back when it dies, it stops by itself when serve is killed, and it gets serve's settings."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from live_service import Service, wait_until
from server_testkit import ADMIN_AUTH, FAST_OVERRIDES, RUNNER_AUTH

from server import migrate
from server.settings import Settings
from server.trainer.process import settings_environment

pytestmark = pytest.mark.slow


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _lease_owner(url: str, run_id: int) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT owner FROM trainer_leases WHERE run_id = :r"),
                                {"r": run_id}).scalar()
    finally:
        engine.dispose()


def test_settings_reach_the_trainer_process_unchanged(monkeypatch, tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'x.db'}", admin_token="a" * 32,
        runner_token="r" * 32, torch_threads=1, checkpoint_dir=tmp_path, trainer_slots=3,
        cors_origins=["http://lab.example"], lease_ttl_s=7.5, trainer_name="box-1")
    env = settings_environment(settings)
    assert "DCLAW_TRAINER_METRICS_PORT" not in env  # unset stays unset
    for key in [k for k in os.environ if k.startswith("DCLAW_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no .env here
    assert Settings() == settings


def test_serve_trains_in_a_child_process_that_comes_back_and_dies_with_serve(
        dclaw_cmd, sqlite_url, tmp_path):
    migrate.upgrade(sqlite_url)
    service = Service(dclaw_cmd, sqlite_url, tmp_path, separate_trainer=False)
    service.start("trainer-in-serve")
    try:
        client = httpx.Client(base_url=service.url, timeout=30)
        (first,) = wait_until(service.trainer_children, "serve's trainer process")
        assert _cmdline(first)[-1] == "trainer"
        assert client.get("/readyz").json()["detail"]["trainer"] == "running"

        run = client.post("/api/v1/runs", headers=ADMIN_AUTH, json={
            "name": "child", "preset": "cpu-small", "mode": "sync",
            "overrides": FAST_OVERRIDES}).json()
        assert client.post(f"/api/v1/runs/{run['id']}/start", headers=ADMIN_AUTH).is_success

        def assigned():
            got = client.post(f"/api/v1/runs/{run['id']}/assignments", headers=RUNNER_AUTH,
                              json={"runner": "r", "seq": 0})
            return got.json() if got.status_code == 200 else None

        assert wait_until(assigned, "the child's first decision")["policy_kind"] == "mf"
        # Behind the API for the CPU: every thread of the child, the learning ones included.
        threads = [int(t) for t in os.listdir(f"/proc/{first}/task")]
        nice = {t: os.getpriority(os.PRIO_PROCESS, t) for t in threads}
        assert set(nice.values()) == {10}, nice  # (settings: trainer_nice)

        # The trainer dies on its own: the API stays up, reports it, and starts a new one.
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: client.get("/readyz").status_code == 503, "readiness to drop")
        assert client.get("/readyz").json()["detail"]["trainer"] == "not running"
        (second,) = wait_until(lambda: [p for p in service.trainer_children() if p != first],
                          "a new trainer process", timeout=30)
        wait_until(lambda: client.get("/readyz").status_code == 200, "readiness to return")

        wait_until(lambda: _lease_owner(sqlite_url, run["id"]), "the new trainer's lease")

        # serve is SIGKILLed (no chance to stop its child): the child notices and stops as on
        # SIGTERM, freeing the run's lease for the next serve rather than holding it.
        service.api.kill()
        service.api.wait(timeout=30)
        wait_until(lambda: not _alive(second), "the orphaned trainer to stop", timeout=60)
        assert _lease_owner(sqlite_url, run["id"]) is None
    except BaseException:
        print(service.logs())
        raise
    finally:
        service.stop(signal.SIGKILL)
