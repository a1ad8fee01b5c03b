"""A real `dclaw serve` process (with its trainer, or beside a `dclaw trainer`) for end-to-end
tests of the service, the runner and the dashboard."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from dclaw.service_process import free_port, wait_ready

ADMIN = "admin-token-for-tests-0123456789"
RUNNER = "runner-token-for-tests-0123456789"
# Small learner budgets: a cpu-small run that learns in a fraction of a second per episode.
FAST_OVERRIDES = {
    "warmup_episodes": 2,
    "sac__updates_per_episode": 5,
    "sac__batch_size": 64,
    "dynamics__updates_per_episode": 3,
    "mb_policy__updates_per_episode": 2,
    "mb_policy__num_masks": 2,
    "mb_policy__rollouts_per_mask": 2,
    "gate__num_masks": 8,
    "gate__rollouts_per_mask": 2,
}


def wait_until(predicate, what: str, timeout: float = 120.0):
    """The predicate's first truthy value, polled every 0.1 s; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Service:
    """`dclaw serve` in a subprocess, with its trainer inside, or (`separate_trainer`) with
    --no-trainer beside a `dclaw trainer` process, as on two machines. Logs go to files the test
    prints on failure."""

    def __init__(self, dclaw_cmd, db_url: str, workdir, separate_trainer: bool):
        self.port = free_port()
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
        wait_ready(self.url, self.api, timeout=90, log=self.workdir / "serve.log")

    def start_trainer(self, name: str) -> None:
        self.trainer = self._spawn(["trainer", "--name", name], name, "trainer.log")

    def trainer_children(self) -> list[int]:
        """Pids of `dclaw serve`'s trainer process(es) (Linux: the kernel's child lists, one per
        thread of serve: a restarted trainer is started by a watcher thread)."""
        if self.api is None:
            return []
        children = []
        for path in Path(f"/proc/{self.api.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the thread ended meanwhile
                children += [int(c) for c in path.read_text().split()]
        return children

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
        """Stops the API (and the trainer process): SIGTERM is a graceful shutdown; SIGKILL
        kills serve's own trainer process too (it would stop by itself, checkpointing)."""
        if sig == signal.SIGKILL:
            for child in self.trainer_children():
                os.kill(child, signal.SIGKILL)
        codes = []
        for process in (self.trainer, self.api):
            if process is not None and process.poll() is None:
                process.send_signal(sig)
                codes.append(process.wait(timeout=60))
        return min(codes, default=0)

    def logs(self) -> str:
        return "\n".join(f.read_text()[-5000:] for f in sorted(self.workdir.glob("*.log")))
