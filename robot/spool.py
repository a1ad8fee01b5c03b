"""The local spool: every finished episode is on disk before it is sent, so none is ever lost.

One JSON file per episode, written atomically (temporary file, fsync, rename), named by seq so
that the oldest is sent first. A background thread sends what is there with exponential backoff,
keeping each episode's idempotency key, and deletes a file only once the service has it. An upload
the service refuses outright (4xx) is moved to `rejected/` with the reason, never deleted.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robot.client import LearnerClient, Rejected, ServiceUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpooledEpisode:
    path: Path
    seq: int
    key: str
    body: dict[str, Any]


class Spool:
    """The directory of one runner on one run."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.rejected_dir = self.dir / "rejected"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def put(self, body: dict[str, Any], key: str | None = None) -> SpooledEpisode:
        """Writes an episode durably; returns it with its (new) idempotency key."""
        key = key or uuid.uuid4().hex
        seq = int(body["seq"])
        path = self.dir / f"episode-{seq:012d}.json"
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        with tmp.open("w") as out:
            json.dump({"key": key, "body": body}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.dir)
        return SpooledEpisode(path, seq, key, body)

    def pending(self) -> list[SpooledEpisode]:
        """Spooled episodes, oldest (smallest seq) first. Unreadable files are set aside."""
        items = []
        for path in sorted(self.dir.glob("episode-*.json")):
            try:
                document = json.loads(path.read_text())
                items.append(SpooledEpisode(path, int(document["body"]["seq"]), document["key"],
                                            document["body"]))
            except FileNotFoundError:
                continue  # sent and removed meanwhile
            except (ValueError, KeyError, TypeError) as exc:
                self._set_aside(path, f"unreadable spool file: {exc}")
        return items

    def max_seq(self) -> int | None:
        seqs = [int(p.stem.split("-")[1]) for p in self.dir.glob("episode-*.json")]
        seqs += [int(p.stem.split("-")[1]) for p in self.rejected_dir.glob("episode-*.json")]
        return max(seqs) if seqs else None

    def done(self, item: SpooledEpisode) -> None:
        item.path.unlink(missing_ok=True)

    def reject(self, item: SpooledEpisode, reason: str) -> None:
        self._set_aside(item.path, reason)

    def _set_aside(self, path: Path, reason: str) -> None:
        self.rejected_dir.mkdir(exist_ok=True)
        if path.exists():
            os.replace(path, self.rejected_dir / path.name)
            (self.rejected_dir / f"{path.name}.reason.txt").write_text(reason + "\n")
        log.error("episode file %s set aside in %s: %s", path.name, self.rejected_dir, reason)

    def __len__(self) -> int:
        return sum(1 for _ in self.dir.glob("episode-*.json"))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def send(spool: Spool, client: LearnerClient, item: SpooledEpisode) -> dict[str, Any] | None:
    """Sends one spooled episode. Returns its summary once stored; None if the service is away.

    A 4xx other than a retryable one sets the file aside with the service's reason.
    """
    try:
        _, summary = client.upload(item.body, item.key)
    except ServiceUnavailable as exc:
        log.debug("episode seq %d stays spooled: %s", item.seq, exc)
        return None
    except Rejected as exc:
        spool.reject(item, f"the service refused the upload: {exc}")
        return None
    spool.done(item)
    return summary


class SpoolSender(threading.Thread):
    """Sends spooled episodes in the background, oldest first, backing off while the service
    is away (0.5 s doubling to 30 s, with jitter); `kick()` wakes it when a file arrives."""

    def __init__(self, spool: Spool, make_client: Callable[[], LearnerClient],
                 on_sent: Callable[[dict[str, Any]], None] | None = None,
                 min_backoff: float = 0.5, max_backoff: float = 30.0):
        super().__init__(name="spool-sender", daemon=True)
        self.spool, self._make_client, self._on_sent = spool, make_client, on_sent
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self._wake, self._halt = threading.Event(), threading.Event()
        self.backoff = 0.0
        self.last_error: str | None = None

    def kick(self) -> None:
        self._wake.set()

    def halt(self) -> None:
        self._halt.set()
        self._wake.set()

    def run(self) -> None:
        client = self._make_client()
        try:
            while not self._halt.is_set():
                self._wake.clear()
                if self._drain(client):
                    self.backoff = 0.0
                    self._wake.wait(5.0)
                else:
                    self.backoff = min(self.max_backoff, max(self.min_backoff, self.backoff * 2))
                    self._wake.wait(self.backoff * random.uniform(0.8, 1.2))
        finally:
            client.close()

    def _drain(self, client: LearnerClient) -> bool:
        """Sends everything pending, oldest first; False when the service is away."""
        for item in self.spool.pending():
            if self._halt.is_set():
                return True
            try:
                summary = send(self.spool, client, item)
            except Exception as exc:  # never let the sender die: the files stay on disk
                log.exception("spool sender: %s", exc)
                summary = None
            if summary is None and item.path.exists():
                self.last_error = f"service unreachable; {len(self.spool)} episode(s) spooled"
                return False
            if summary is not None and self._on_sent is not None:
                self._on_sent(summary)
        self.last_error = None
        return True
