"""`dclaw emulate` in a child process, for tests and scripts: its port and its console.

    with EmulatorProcess("--guide") as emu:
        port = dynamixel_sdk.PortHandler(emu.port)
        ...
        emu.command("fault stuck 31")       # waits for `ok fault stuck 31`

The emulator must run in a process of its own: dynamixel-sdk busy-waits while it holds the GIL,
so an emulator in a thread of the client's process would not answer in time.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence


class EmulatorError(RuntimeError):
    """The emulator did not start, or did not answer a console command."""


class EmulatorProcess:
    """Starts `python -m dclaw.cli emulate --quit-on-eof ARGS` and reads its `port:` line.

    The emulator exits when this process does (its stdin, our pipe, then ends).
    """

    def __init__(self, *args: str, command: Sequence[str] | None = None,
                 start_timeout: float = 60.0):
        argv = [*(command or (sys.executable, "-m", "dclaw.cli")), "emulate", "--quit-on-eof",
                *args]
        # Kept after close() for stderr(); the file goes with this object.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        # A session of its own: a Ctrl-C in the terminal reaches the runner, which still needs
        # the bus to hold the claw and turn the torque off; the emulator quits on stdin's EOF.
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, text=True, bufsize=1,
                                      start_new_session=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        first = self._next_line(start_timeout)
        if first is None or not first.startswith("port: "):
            self.close()
            raise EmulatorError(f"dclaw emulate did not start: {first!r}\n{self.stderr()}")
        self.port = first.removeprefix("port: ").strip()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def command(self, line: str, timeout: float = 10.0) -> list[str]:
        """Sends a console line; returns what it printed, through its `ok`/`error:` line."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        out: list[str] = []
        while True:
            reply = self._next_line(timeout)
            if reply is None:
                raise EmulatorError(f"no answer to {line!r} (got {out})\n{self.stderr()}")
            out.append(reply)
            if reply.startswith(("ok ", "error:")):
                return out

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float = 10.0) -> int:
        """Waits for it to exit by itself (after `quit`); returns its exit status."""
        return self._proc.wait(timeout)

    def close(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; returns its exit status."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._pump_thread.join(timeout)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        return self._proc.returncode

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
