"""`dclaw run` as a user runs it: a real service process with its trainer, the
runner as a process, signals, the service killed mid-episode and brought back. Every episode the
runner finished arrives exactly once."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time

import httpx
import pytest
from live_service import ADMIN, FAST_OVERRIDES, RUNNER, Service

from server import migrate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}



@pytest.fixture
def service(dclaw_cmd, tmp_path):
    db = f"sqlite:///{tmp_path / 'dclaw.db'}"
    migrate.upgrade(db)
    service = Service(dclaw_cmd, db, tmp_path, separate_trainer=False)
    service.start("trainer-1")
    yield service
    service.stop(signal.SIGKILL)


def new_run(service: Service, name: str, mode: str = "sync") -> int:
    with httpx.Client(base_url=service.url, headers=ADMIN_AUTH) as http:
        run = http.post("/api/v1/runs", json={"name": name, "algorithm": "unified",
                                              "preset": "cpu-small", "mode": mode,
                                              "overrides": FAST_OVERRIDES}).json()
        assert http.post(f"/api/v1/runs/{run['id']}/start").is_success
    return run["id"]


class RunnerProcess:
    def __init__(self, dclaw_cmd, service: Service, run_id: int, tmp_path, *args: str,
                 token: str = RUNNER, name: str = "sim-1", backend: str = "sim"):
        self.log = tmp_path / f"runner-{name}-{time.monotonic_ns()}.log"
        env = {**os.environ, "DCLAW_RUNNER_TOKEN": token, "COLUMNS": "200"}
        self.process = subprocess.Popen(
            [*dclaw_cmd, "run", "--run", str(run_id), "--learner", service.url, "--name", name,
             "--backend", backend, "--seed", "0", "--spool", str(tmp_path / "spool"), *args],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float = 120) -> int:
        return self.process.wait(timeout=timeout)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.process.poll() is None or text in self.output(), self.output()
            assert time.monotonic() < deadline, f"{text!r} not in:\n{self.output()}"
            time.sleep(0.05)


def episodes(service: Service, run_id: int) -> list[dict]:
    got = httpx.get(f"{service.url}/api/v1/runs/{run_id}/episodes", params={"limit": 500})
    return got.json()["items"]


def runner_row(service: Service, run_id: int, name: str) -> dict:
    rows = httpx.get(f"{service.url}/api/v1/runs/{run_id}/runners").json()
    return next(r for r in rows if r["name"] == name)


def wait_until(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_runner_feeds_the_run_until_it_is_stopped(dclaw_cmd, service, tmp_path):
    run_id = new_run(service, "feed")
    runner = RunnerProcess(dclaw_cmd, service, run_id, tmp_path, "--unpaced")
    wait_until(lambda: len(episodes(service, run_id)) >= 4, 120, "4 episodes")
    httpx.post(f"{service.url}/api/v1/runs/{run_id}/stop", headers=ADMIN_AUTH)
    assert runner.wait() == 0, runner.output()
    out = runner.output()
    assert "the run is not running" in out

    stored = episodes(service, run_id)
    assert [e["seq"] for e in stored] == list(range(len(stored)))  # each once, in order
    assert all(e["runner"] == "sim-1" and e["steps"] == 40 for e in stored)
    assert -900 < stored[0]["return"] < -500  # the D'Claw task's scale
    for e in stored:
        for key in ("period_error_p99_ms", "compute_p99_ms", "overruns", "reset_s", "assign_s"):
            assert key in e["timing"], e["timing"]
        assert e["timing"]["ticks"] == 41
        assert f"seq {e['seq']:>4}" in out  # the console line of each episode
    # Warm-up is MF; the policies the runner ran are the ones the service assigned.
    assert stored[0]["policy_kind"] == "mf"
    row = runner_row(service, run_id, "sim-1")
    assert row["status"] == "stopped" and row["details"]["backend"] == "sim"
    assert not list((tmp_path / "spool").glob("*/episode-*.json"))


def test_paced_episodes_keep_10_hz_and_ctrl_c_finishes_the_episode(dclaw_cmd, service,
                                                                   tmp_path):
    run_id = new_run(service, "paced", mode="async")
    runner = RunnerProcess(dclaw_cmd, service, run_id, tmp_path)
    wait_until(lambda: runner_row_or_none(service, run_id, "sim-1", "running"), 60, "running")
    started = time.monotonic()
    runner.process.send_signal(signal.SIGINT)
    assert runner.wait() == 0, runner.output()
    assert time.monotonic() - started < 6  # at most the rest of one 4 s episode
    assert "stopping after this episode" in runner.output()
    stored = episodes(service, run_id)
    assert len(stored) == 1
    timing = stored[0]["timing"]
    assert timing["overruns"] == 0
    detail = httpx.get(f"{service.url}/api/v1/runs/{run_id}/episodes/{stored[0]['id']}",
                       params={"arrays": True}).json()
    stamps = detail["timestamps"]
    assert stamps[-1] == pytest.approx(4.0, abs=0.05)  # 40 ticks of 100 ms on the clock
    periods = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(abs(p - 0.1) for p in periods) < 0.02


def runner_row_or_none(service, run_id, name, status):
    rows = httpx.get(f"{service.url}/api/v1/runs/{run_id}/runners").json()
    return any(r["name"] == name and r["status"] == status for r in rows)


def test_service_down_mid_episode_loses_nothing_across_a_runner_restart(dclaw_cmd, service,
                                                                        tmp_path):
    run_id = new_run(service, "outage", mode="async")
    runner = RunnerProcess(dclaw_cmd, service, run_id, tmp_path)
    wait_until(lambda: len(episodes(service, run_id)) >= 1, 60, "the first episode")
    wait_until(lambda: runner_row_or_none(service, run_id, "sim-1", "running"), 30, "episode 2")
    service.stop(signal.SIGKILL)  # mid-episode: its upload will fail
    runner.wait_for("spooled", 30)
    runner.wait_for("service unavailable", 30)  # it says so and waits: no new episode
    spool = tmp_path / "spool" / f"run{run_id}-sim-1"
    assert len(list(spool.glob("episode-*.json"))) == 1
    runner.process.send_signal(signal.SIGTERM)
    assert runner.wait(30) == 0
    assert "1 episode(s) stay spooled" in runner.output()
    assert len(list(spool.glob("episode-*.json"))) == 1  # it survives the runner's exit

    service.start("trainer-2")
    again = RunnerProcess(dclaw_cmd, service, run_id, tmp_path, "--episodes", "1")
    assert again.wait() == 0, again.output()
    stored = episodes(service, run_id)
    assert sorted(e["seq"] for e in stored) == [0, 1, 2]  # the spooled one and one more
    assert not list(spool.glob("episode-*.json"))


def test_a_wrong_token_is_refused_with_what_to_set(dclaw_cmd, service, tmp_path):
    run_id = new_run(service, "token")
    runner = RunnerProcess(dclaw_cmd, service, run_id, tmp_path, "--unpaced", token="wrong" * 8)
    assert runner.wait(60) == 4
    assert "DCLAW_RUNNER_TOKEN" in runner.output()
    assert episodes(service, run_id) == []


def test_hardware_path_on_the_emulator_ctrl_c_is_a_safety_stop_the_dashboard_sees(
        dclaw_cmd, service, tmp_path):
    run_id = new_run(service, "emulated", mode="async")
    runner = RunnerProcess(dclaw_cmd, service, run_id, tmp_path, "--emulate",
                           "--max-failed-reads", "8", name="emu-1", backend="dynamixel")
    wait_until(lambda: len(episodes(service, run_id)) >= 1, 90, "an episode over the bus")
    wait_until(lambda: runner_row_or_none(service, run_id, "emu-1", "running"), 30, "episode 2")
    time.sleep(0.5)
    runner.process.send_signal(signal.SIGINT)  # on hardware: stop now, hold, torque off
    assert runner.wait(30) == 3, runner.output()
    assert "SAFETY STOP" in runner.output()
    stored = episodes(service, run_id)
    assert len(stored) == 1 and stored[0]["runner"] == "emu-1"  # the aborted one is not sent
    events = httpx.get(f"{service.url}/api/v1/runs/{run_id}/events").json()["items"]
    assert [e["details"]["cause"] for e in events] == ["signal"]
    assert "SIGINT" in events[0]["message"]
    row = runner_row(service, run_id, "emu-1")
    assert row["status"] == "safety_stop" and row["details"]["backend"] == "dynamixel"
