"""`dclaw demo`: the whole system on one machine with the embedded defaults.

Migrates a SQLite database in the data directory, starts `dclaw serve` (API, dashboard and a
trainer) as a child process, creates (or finds) the run `demo` — Unified RL, `cpu-small` — and
starts it, then runs a robot runner in this process on the MuJoCo sim, or with `--emulator` on the
Dynamixel bus emulator through dynamixel-sdk. Ctrl-C finishes the episode, stops the run (the
trainer checkpoints) and the service; everything stays in the data directory, and the next
`dclaw demo` resumes the same run.

Plain subprocess orchestration written here (no supervisor library): three children, started in
order, stopped in reverse.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from dclaw.service_process import wait_ready

ADMIN = "dev-admin-token"  # the service's dev-mode defaults (DCLAW_DEV=1): a local demo only
RUNNER = "dev-runner-token"
RUN_NAME = "demo"


def _dclaw() -> list[str]:
    return [sys.executable, "-m", "dclaw.cli"]


class Demo:
    def __init__(self, data_dir: Path, port: int, emulator: bool, episodes: int | None,
                 console: Console | None = None):
        self.data_dir = data_dir.resolve()
        self.port, self.emulator, self.episodes = port, emulator, episodes
        self.url = f"http://127.0.0.1:{port}"
        self.console = console or Console()
        self.env = {**os.environ, "DCLAW_DEV": "1",
                    "DCLAW_DATABASE_URL": f"sqlite:///{self.data_dir / 'dclaw.db'}",
                    "DCLAW_ADMIN_TOKEN": ADMIN, "DCLAW_RUNNER_TOKEN": RUNNER}
        # The trainer shares this machine with the runner and the API: one torch thread, or
        # torch's spinning worker threads take the cores from everything else (and from
        # training itself). A GPU box or a bigger machine can set its own.
        self.env.setdefault("DCLAW_TORCH_THREADS", "1")
        self.children: list[subprocess.Popen] = []
        self.http = httpx.Client(base_url=self.url, timeout=30,
                                 headers={"Authorization": f"Bearer {ADMIN}"})

    def _spawn(self, args: list[str], log: str, **kwargs) -> subprocess.Popen:
        out = (self.data_dir / log).open("a")
        # Own process group: the terminal's Ctrl-C reaches this process only, which then
        # stops the children in order.
        child = subprocess.Popen([*_dclaw(), *args], env=self.env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        self.children.append(child)
        return child

    def start_service(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([*_dclaw(), "db", "upgrade"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        service = self._spawn(["serve", "--port", str(self.port)], "serve.log")
        with self.console.status(f"starting the service on {self.url} ..."):
            try:
                wait_ready(self.url, service, timeout=120, log=self.data_dir / "serve.log")
            except RuntimeError as exc:
                raise SystemExit(f"{exc}\n(log: {self.data_dir / 'serve.log'})") from exc

    def ensure_run(self) -> dict:
        runs = self.http.get("/api/v1/runs").json()
        run = next((r for r in runs if r["name"] == RUN_NAME), None)
        if run is None:
            got = self.http.post("/api/v1/runs", json={
                "name": RUN_NAME, "algorithm": "unified", "preset": "cpu-small", "mode": "sync"})
            got.raise_for_status()
            run = got.json()
            self.console.print(f"created run {run['id']} {RUN_NAME!r} (unified, cpu-small)")
        else:
            self.console.print(f"resuming run {run['id']} {RUN_NAME!r}: {run['episodes']} "
                               "episodes so far")
        if run["status"] != "running":
            deadline = time.monotonic() + 60
            while (got := self.http.post(f"/api/v1/runs/{run['id']}/start")).status_code == 409:
                if time.monotonic() > deadline:  # e.g. still `stopping` from a killed demo
                    break
                time.sleep(0.5)
            got.raise_for_status()
        return run

    def run_robot(self, run_id: int) -> int:
        from robot.runner import Runner, RunnerConfig

        emulator = None
        if self.emulator:
            from robot.dynamixel import DynamixelBackend
            from sim.emulator_process import EmulatorProcess

            emulator = EmulatorProcess()
            self.console.print(f"Dynamixel bus emulator on {emulator.port}")
            backend = DynamixelBackend(emulator.port)
            name = "emulated-claw"
        else:
            from sim.backend import SimBackend

            backend, name = SimBackend(), "sim-claw"
        config = RunnerConfig(learner_url=self.url, run_id=run_id, name=name, token=RUNNER,
                              episodes=self.episodes, spool_dir=self.data_dir / "spool")
        try:
            return Runner(config, backend, console=self.console).run()
        finally:
            if emulator is not None:
                emulator.close()

    def stop(self, run_id: int | None) -> None:
        if run_id is not None:
            try:
                self.http.post(f"/api/v1/runs/{run_id}/stop")
                with self.console.status("stopping the run (the trainer checkpoints) ..."):
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline:
                        status = self.http.get(f"/api/v1/runs/{run_id}").json()["status"]
                        if status in ("stopped", "failed"):
                            break
                        time.sleep(0.3)
            except httpx.HTTPError as exc:
                self.console.print(f"[yellow]could not stop the run cleanly: {exc}[/]")
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        self.http.close()

    def main(self) -> int:
        run_id = None
        try:
            self.start_service()
            run = self.ensure_run()
            run_id = run["id"]
            self.console.print(
                f"[bold]dashboard:[/] {self.url}/dashboard   (API docs: {self.url}/docs)\n"
                f"data: {self.data_dir}  ·  Ctrl-C finishes the episode and stops; "
                "`dclaw demo` again resumes")
            return self.run_robot(run_id)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this
            self.stop(run_id)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.console.print(f"stopped; data kept in {self.data_dir}")
