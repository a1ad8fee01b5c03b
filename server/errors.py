"""Errors the repository and the trainer raise; `server/app.py` maps each to one HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: `str(error)` is the message the client reads."""

    status_code = 400


class NotFound(ServiceError):
    status_code = 404


class Gone(ServiceError):
    """It existed and was removed on purpose (a pruned policy document)."""

    status_code = 410


class Conflict(ServiceError):
    """The request clashes with what is stored (duplicate name, reused sequence number...)."""

    status_code = 409


class InvalidInput(ServiceError):
    """Well-formed JSON that says something impossible (wrong shapes, unknown policy version)."""

    status_code = 422


class Refused(ServiceError):
    """The run is not in a state that allows the request (e.g. an assignment for a stopped run)."""

    status_code = 409


class NotReady(ServiceError):
    """Sync mode: the trainer has not learnt from the runner's previous episode yet."""

    status_code = 503

    def __init__(self, message: str, retry_after_ms: int):
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class SchemaOutOfDate(RuntimeError):
    """The database is behind (or ahead of) the newest migration."""


class LeaseLost(RuntimeError):
    """This trainer no longer holds the run's lease: it must stop writing at once."""
