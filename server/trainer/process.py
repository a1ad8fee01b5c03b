"""`dclaw serve`'s trainer: a `dclaw trainer` child process beside the API.

Learning runs in its own process, never under the API's GIL: while a run trained, episode ingest
at 200/s had a p99 of 143-399 ms with the trainer in the API's process and 19-56 ms with it in a
process of its own (alternating runs; docs/BENCHMARKS.md, "Learner service"). The child gets
this process's settings through its environment, stops (ending its step after the episode it is
learning from, checkpointing) on SIGTERM, stops by itself when this process dies, and is
started again if it exits on its own.

Plain `subprocess` rather than `multiprocessing`: the child is the same `dclaw trainer` an
operator runs on a second machine, with nothing shared but the database.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading

from pydantic import SecretStr

from server.settings import Settings

log = logging.getLogger(__name__)

RESTART_DELAY_S = 5.0  # a trainer that keeps failing at start does not spin


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes a child build the same `Settings` (DCLAW_<FIELD> variables;
    unset fields are left out, so the child's defaults apply, as they did here)."""
    env: dict[str, str] = {}
    for name, value in settings:
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | dict):
            text = json.dumps(value)
        else:
            text = str(value)
        env[f"DCLAW_{name.upper()}"] = text
    return env


class TrainerProcess:
    """Starts, watches and stops one `dclaw trainer` child. `alive` is what /readyz reports."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # no new child once stop() has begun
        self._watcher = threading.Thread(target=self._watch, name="trainer-process", daemon=True)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def stop(self, timeout: float = 120.0) -> int | None:
        """SIGTERM: the child ends its step after the episode it is learning from,
        checkpoints and frees its leases. Killed if it has not exited after `timeout`
        seconds. Returns its exit code."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("trainer process %d did not stop in %.0f s; killing it", process.pid,
                          timeout)
                process.kill()
                process.wait()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        return process.returncode

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self.process = self._popen()
        log.info("trainer process %d started (%s)", self.process.pid, self.settings.trainer_name)

    def _popen(self) -> subprocess.Popen:
        env = {key: value for key, value in os.environ.items() if not key.startswith("DCLAW_")}
        env.update(settings_environment(self.settings))
        env["DCLAW_PARENT_PID"] = str(os.getpid())  # the child stops when this process dies
        return subprocess.Popen([sys.executable, "-m", "dclaw", "trainer"], env=env)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self.process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("trainer process %d exited with code %d; starting a new one in %.0f s "
                      "(its runs resume from their checkpoints)", process.pid, code,
                      RESTART_DELAY_S)
            if self._stopping.wait(RESTART_DELAY_S):
                return
            self._spawn()
