"""What `dclaw serve`, `dclaw trainer` and `dclaw db` do; `dclaw/cli.py` imports this lazily.

Each function raises `StartupRefused` with a message for the operator instead of a traceback
when the settings are unsafe or the database is behind the newest migration.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any

from pydantic import ValidationError

from server import migrate
from server.db import make_engine, make_session_factory
from server.errors import SchemaOutOfDate
from server.settings import Settings, get_database_settings, get_settings

log = logging.getLogger(__name__)


class StartupRefused(RuntimeError):
    pass


def load_settings(**overrides: Any) -> Settings:
    """Settings with the CLI's overrides (None means: not given)."""
    try:
        return get_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        messages = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise StartupRefused(f"bad settings: {messages}") from exc


def check_database(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    try:
        migrate.check_schema(engine)
    except SchemaOutOfDate as exc:
        raise StartupRefused(str(exc)) from exc
    finally:
        engine.dispose()


def serve(settings: Settings, *, access_log: bool = False, workers: int = 1) -> None:
    """The API under uvicorn and, with settings.trainer, a `dclaw trainer` child process.

    With workers > 1, uvicorn runs that many processes of the (stateless) API; each builds its
    settings from the environment, so the CLI's trainer choice is passed on through it. With the
    trainer on, every worker starts a trainer process (leases share the runs out among them)."""
    import uvicorn

    from server.app import create_app

    check_database(settings)
    log.info("serving on http://%s:%d (%d worker(s), trainer %s)", settings.host, settings.port,
             workers, "on" if settings.trainer else "off")
    options = {"host": settings.host, "port": settings.port, "access_log": access_log,
               "log_level": "info", "timeout_graceful_shutdown": 30}
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    os.environ["DCLAW_TRAINER"] = "true" if settings.trainer else "false"
    uvicorn.run("server.app:create_app", factory=True, workers=workers, **options)


def run_trainer(settings: Settings, *, metrics_port: int | None = None) -> None:
    """Trainers alone (another GPU box against the same PostgreSQL) until SIGINT/SIGTERM, or,
    as `dclaw serve`'s child (DCLAW_PARENT_PID set), until that process is gone."""
    from prometheus_client import start_http_server

    from server.metrics import TrainerMetrics
    from server.trainer.supervisor import TrainerSupervisor

    check_database(settings)
    engine = make_engine(settings.database_url)
    metrics = TrainerMetrics()
    if metrics_port is None:
        metrics_port = settings.trainer_metrics_port
    if metrics_port is not None:
        try:
            start_http_server(metrics_port, registry=metrics.registry)
        except OSError as exc:  # e.g. two API workers' trainers: the first one has the port
            log.error("trainer metrics not served: port %d: %s", metrics_port, exc)
    supervisor = TrainerSupervisor(settings=settings, session_factory=make_session_factory(engine),
                                   metrics=metrics)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    parent = os.environ.get("DCLAW_PARENT_PID")
    if parent:  # serve's child: behind the API for the CPU, and gone when serve is
        log.info("trainer: %s, behind the API for the CPU", yield_cpu(settings))
        threading.Thread(target=_stop_when_orphaned, args=(int(parent), stop), daemon=True,
                         name="parent-watch").start()
    supervisor.start()
    stop.wait()
    log.info("trainer %s: stopping (after the episodes being learnt, checkpointing)",
             settings.trainer_name)
    supervisor.stop()
    engine.dispose()


def yield_cpu(settings: Settings) -> str:
    """Puts every thread of this process, and those it starts from now on (the trainer's,
    torch's), behind the API for the CPU; returns what it did. On Linux a niceness is a
    thread's: `os.nice` alone left a thread that importing torch had started at 0."""
    for tid in _threads():
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.setpriority(os.PRIO_PROCESS, tid, settings.trainer_nice)
    return f"nice {settings.trainer_nice}"


def _threads() -> list[int]:
    """This process's threads, this one first (0: the calling thread, where /proc is absent)."""
    try:
        me = threading.get_native_id()
        others = [int(t) for t in os.listdir("/proc/self/task") if int(t) != me]
    except OSError:
        others = []
    return [0, *others]


def _stop_when_orphaned(parent_pid: int, stop: threading.Event) -> None:
    """`dclaw serve` was killed (even SIGKILL): stop as on SIGTERM, checkpointing, rather than
    train on unseen with a lease the next `serve` waits for. Polling getppid is portable."""
    while not stop.wait(0.5):
        if os.getppid() != parent_pid:
            log.warning("trainer: the service process %d is gone; stopping", parent_pid)
            stop.set()


def db_upgrade(revision: str = "head", database_url: str | None = None) -> str:
    url = _url(database_url)
    migrate.upgrade(url, revision)
    return _current(url)


def db_downgrade(revision: str, database_url: str | None = None) -> str:
    url = _url(database_url)
    migrate.downgrade(url, revision)
    return _current(url)


def db_current(database_url: str | None = None) -> tuple[str, str | None, str]:
    url = _url(database_url)
    return _redacted(url), _current(url), migrate.head_revision()


def _url(database_url: str | None) -> str:
    overrides = {"database_url": database_url} if database_url else {}
    return get_database_settings(**overrides).database_url


def _current(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
