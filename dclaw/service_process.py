"""`dclaw serve` as a child process: a free port, and waiting until it answers /readyz.

Shared by `dclaw demo`, the benchmarks and the end-to-end tests.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0,
               log: Path | None = None) -> None:
    """Returns once `url`/readyz answers 200; raises RuntimeError (with the log's tail) if the
    process exits first or the time runs out."""
    def tail() -> str:
        return f"\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with status {process.returncode}{tail()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the service at {url} was not ready within {timeout:.0f} s{tail()}")
