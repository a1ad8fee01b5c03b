"""Where checkpoint bytes live: in the database (default: any trainer machine can resume a run)
or as files in `DCLAW_CHECKPOINT_DIR` (storage every trainer must share)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from server.models import Checkpoint


class CheckpointCorrupt(RuntimeError):
    pass


@dataclass(frozen=True)
class StoredCheckpoint:
    data: bytes | None  # for the database column
    path: str | None  # or the file written
    sha256: str
    size: int


class CheckpointStore:
    def __init__(self, directory: Path | None):
        self.directory = directory

    def save(self, *, run_id: int, episodes_seen: int, generation: int,
             data: bytes) -> StoredCheckpoint:
        sha256 = hashlib.sha256(data).hexdigest()
        if self.directory is None:
            return StoredCheckpoint(data, None, sha256, len(data))
        folder = self.directory / f"run-{run_id}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ep{episodes_seen:08d}-g{generation}-{sha256[:12]}.pt"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)  # atomic: never half a checkpoint under the final name
        return StoredCheckpoint(None, str(path), sha256, len(data))

    @staticmethod
    def load(checkpoint: Checkpoint) -> bytes:
        if checkpoint.data is not None:
            data = checkpoint.data
        elif checkpoint.path is not None:
            data = Path(checkpoint.path).read_bytes()
        else:
            raise CheckpointCorrupt(f"checkpoint {checkpoint.id} has neither data nor a path")
        if hashlib.sha256(data).hexdigest() != checkpoint.sha256:
            raise CheckpointCorrupt(f"checkpoint {checkpoint.id} does not match its sha256")
        return data

    @staticmethod
    def remove(paths: list[str]) -> None:
        for path in paths:
            Path(path).unlink(missing_ok=True)
