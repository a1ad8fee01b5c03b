"""`dclaw demo`, the README's main job: service + trainer + runner on one machine, stopped by
Ctrl-C with the data kept, and resumed by running it again."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _episodes(data_dir) -> list[tuple[int, str, int]]:
    with sqlite3.connect(data_dir / "dclaw.db") as db:
        return db.execute("SELECT run_id, runner, seq FROM episodes ORDER BY id").fetchall()


def _run_status(data_dir) -> str:
    with sqlite3.connect(data_dir / "dclaw.db") as db:
        return db.execute("SELECT status FROM runs WHERE name = 'demo'").fetchone()[0]


def test_demo_runs_stops_on_ctrl_c_and_resumes(dclaw_cmd, tmp_path):
    data = tmp_path / "demo-data"
    port = _port()
    log = tmp_path / "demo.log"
    demo = subprocess.Popen([*dclaw_cmd, "demo", "--port", str(port), "--data-dir", str(data)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while "seq    1" not in log.read_text():
        assert demo.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    demo.send_signal(signal.SIGINT)  # Ctrl-C: finish the episode, stop the run, stop all
    assert demo.wait(timeout=120) == 0, log.read_text()
    out = log.read_text()
    assert f"dashboard: http://127.0.0.1:{port}/dashboard" in out
    assert "stopped; data kept" in out
    first = _episodes(data)
    assert len(first) >= 2 and [seq for _, _, seq in first] == list(range(len(first)))
    assert _run_status(data) == "stopped"  # stopped through the API: checkpointed, resumable
    with socket.socket() as s:  # the service is gone too
        assert s.connect_ex(("127.0.0.1", port)) != 0

    again = subprocess.run([*dclaw_cmd, "demo", "--port", str(port), "--data-dir", str(data),
                            "--episodes", "1"], capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming run 1 'demo'" in again.stdout
    second = _episodes(data)
    assert second[: len(first)] == first  # nothing lost
    assert second[len(first):] == [(1, "sim-claw", len(first))]  # the same run, the next seq
