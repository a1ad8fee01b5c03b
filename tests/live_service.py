"""A real `dclaw serve` process (with its trainer, or beside a `dclaw trainer`) for end-to-end
tests of the service, the runner and the dashboard."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx

# The tokens of tests/server/server_testkit.py.
ADMIN = "admin-token-for-tests-0123456789"
RUNNER = "runner-token-for-tests-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`dclaw serve` in a subprocess, with its trainer inside, or (`separate_trainer`) with
    --no-trainer beside a `dclaw trainer` process, as on two machines. Logs go to files the test
    prints on failure."""

    def __init__(self, dclaw_cmd, db_url: str, workdir, separate_trainer: bool):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DCLAW_")},
            "DCLAW_DATABASE_URL": db_url, "DCLAW_ADMIN_TOKEN": ADMIN,
            "DCLAW_RUNNER_TOKEN": RUNNER, "DCLAW_TORCH_THREADS": "1",
            "DCLAW_TRAINER_POLL_S": "0.05", "DCLAW_RETRY_AFTER_MS": "50",
            "DCLAW_CHECKPOINT_EVERY": "2", "DCLAW_LEASE_TTL_S": "3",
        }
        self.cmd, self.workdir, self.separate = dclaw_cmd, workdir, separate_trainer
        self.api: subprocess.Popen | None = None
        self.trainer: subprocess.Popen | None = None

    def _spawn(self, args: list[str], trainer_name: str, log: str) -> subprocess.Popen:
        env = {**self.env, "DCLAW_TRAINER_NAME": trainer_name}
        with (self.workdir / log).open("a") as out:
            return subprocess.Popen([*self.cmd, *args], env=env, cwd=self.workdir, stdout=out,
                                    stderr=subprocess.STDOUT)

    def start(self, trainer_name: str) -> None:
        args = ["serve", "--port", str(self.port)] + (["--no-trainer"] if self.separate else [])
        self.api = self._spawn(args, trainer_name, "serve.log")
        if self.separate:
            self.start_trainer(trainer_name)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.api.poll() is None, self.logs()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("service not ready:\n" + self.logs())

    def start_trainer(self, name: str) -> None:
        self.trainer = self._spawn(["trainer", "--name", name], name, "trainer.log")

    def kill_trainer_and_restart(self, name: str) -> None:
        """SIGKILL whatever trains (no checkpoint on the way out), then a new trainer."""
        if self.separate:
            assert self.trainer is not None
            self.trainer.kill()
            self.trainer.wait(timeout=60)
            self.start_trainer(name)
        else:
            self.stop(signal.SIGKILL)
            self.start(name)

    def stop(self, sig=signal.SIGTERM) -> int:
        """Stops the API (and the trainer process): SIGTERM is a graceful shutdown."""
        codes = []
        for process in (self.trainer, self.api):
            if process is not None and process.poll() is None:
                process.send_signal(sig)
                codes.append(process.wait(timeout=60))
        return min(codes, default=0)

    def logs(self) -> str:
        return "\n".join(f.read_text()[-5000:] for f in sorted(self.workdir.glob("*.log")))
