"""The trainer supervisor: claims runs through their lease rows and trains each in a worker
thread (never on the API's event loop), with a second thread per run renewing the lease.

A worker stops when its run is stopped (it ends its step after the episode it is learning from,
checkpoints, marks the run `stopped` and frees the lease), when the process shuts down (the same,
but the run stays `running` for the next trainer), or when its lease is lost (it writes nothing
more).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback

from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from server.db import transaction
from server.errors import LeaseLost, NotFound
from server.metrics import TrainerMetrics
from server.repository.leases import Claim, claim_run, fence, release
from server.repository.runs import get_run, set_run_status
from server.settings import Settings
from server.trainer.run_trainer import RunTrainer

log = logging.getLogger(__name__)


class LeaseKeeper(threading.Thread):
    """Renews a lease every third of its time to live; sets `lost` when it cannot."""

    def __init__(self, claim: Claim, settings: Settings, factory: sessionmaker[Session]):
        super().__init__(name=f"lease-run-{claim.run_id}", daemon=True)
        self.claim, self.settings, self.factory = claim, settings, factory
        self.lost, self.done = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.settings.lease_ttl_s / 3):
            try:
                with transaction(self.factory) as session:
                    fence(session, claim=self.claim, now=time.time(),
                          ttl_s=self.settings.lease_ttl_s)
            except LeaseLost:
                log.warning("run %d: lease lost", self.claim.run_id)
                self.lost.set()
                return
            except SQLAlchemyError:
                log.exception("run %d: lease renewal failed; retrying", self.claim.run_id)


class RunWorker(threading.Thread):
    def __init__(self, *, claim: Claim, settings: Settings, factory: sessionmaker[Session],
                 metrics: TrainerMetrics, shutdown: threading.Event):
        super().__init__(name=f"trainer-run-{claim.run_id}", daemon=True)
        self.claim, self.settings, self.factory = claim, settings, factory
        self.metrics, self.shutdown = metrics, shutdown
        self.trainer = RunTrainer(claim=claim, settings=settings, session_factory=factory,
                                  metrics=metrics)
        self.keeper = LeaseKeeper(claim, settings, factory)

    def run(self) -> None:
        self.keeper.start()
        self.metrics.active_runs.inc()
        lost = False
        try:
            self.trainer.load()
            self._loop()
        except LeaseLost:
            lost = True
        except (OperationalError, InterfaceError):
            # The database went away: not the run's fault. Free the lease; a trainer (this one,
            # after a pause) resumes from the checkpoint.
            log.exception("run %d: database error; giving the run back", self.claim.run_id)
            self.shutdown.wait(1.0)
        except Exception as exc:  # the run fails, the trainer process goes on
            log.exception("run %d: training failed", self.claim.run_id)
            self._fail(exc)
        finally:
            self.keeper.done.set()
            self.metrics.active_runs.dec()
            lost = lost or self.keeper.lost.is_set()
            if lost:
                self.metrics.lease_losses.inc()
            else:
                self._release()

    def _loop(self) -> None:
        while True:
            if self.keeper.lost.is_set():
                raise LeaseLost(f"run {self.claim.run_id}: lease lost")
            status = self._status()
            if status == "stopping":
                self.trainer.checkpoint_if_behind()
                with self.trainer.fenced() as session:
                    set_run_status(session, run_id=self.claim.run_id, status="stopped",
                                   expect=("stopping",))
                    # In the same transaction: a run reads `stopped` only once it is free.
                    release(session, claim=self.claim)
                log.info("run %d: stopped", self.claim.run_id)
                return
            if status != "running" or self.shutdown.is_set():
                if status is not None:
                    self.trainer.checkpoint_if_behind()
                return
            if self.trainer.step(self._interrupted) == 0:
                self.shutdown.wait(self.settings.trainer_poll_s)

    def _interrupted(self) -> bool:
        """Whether to end a step early: the process shuts down, or the run is to stop."""
        return (self.shutdown.is_set() or self.keeper.lost.is_set()
                or self._status() != "running")

    def _status(self) -> str | None:
        try:
            with transaction(self.factory) as session:
                return get_run(session, run_id=self.claim.run_id).status
        except NotFound:
            return None

    def _fail(self, exc: Exception) -> None:
        message = "".join(traceback.format_exception_only(exc)).strip()
        try:
            with self.trainer.fenced() as session:
                set_run_status(session, run_id=self.claim.run_id, status="failed",
                               expect=("running", "stopping"), error=message)
        except (LeaseLost, SQLAlchemyError):
            log.exception("run %d: could not record the failure", self.claim.run_id)

    def _release(self) -> None:
        try:
            with transaction(self.factory) as session:
                release(session, claim=self.claim)
        except SQLAlchemyError:
            log.exception("run %d: could not release the lease (it will expire)",
                          self.claim.run_id)


class TrainerSupervisor:
    """Keeps up to `settings.trainer_slots` runs in training."""

    def __init__(self, *, settings: Settings, session_factory: sessionmaker[Session],
                 metrics: TrainerMetrics | None = None):
        self.settings, self.factory = settings, session_factory
        self.metrics = metrics or TrainerMetrics()
        self.shutdown = threading.Event()
        self.workers: list[RunWorker] = []
        self._thread = threading.Thread(target=self._loop, name="trainer-supervisor",
                                        daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        if self.settings.torch_threads is not None:
            import torch

            torch.set_num_threads(self.settings.torch_threads)
        log.info("trainer %s: up to %d run(s) at once", self.settings.trainer_name,
                 self.settings.trainer_slots)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Lets every worker finish its step and checkpoint, then frees their leases."""
        self.shutdown.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for worker in list(self.workers):
            worker.join(timeout)

    def _loop(self) -> None:
        while not self.shutdown.is_set():
            self.workers = [w for w in self.workers if w.is_alive()]
            claim = None
            if len(self.workers) < self.settings.trainer_slots:
                claim = self._claim()
            if claim is not None:
                worker = RunWorker(claim=claim, settings=self.settings, factory=self.factory,
                                   metrics=self.metrics, shutdown=self.shutdown)
                self.workers.append(worker)
                worker.start()
                log.info("trainer %s: training run %d (lease generation %d)",
                         claim.owner, claim.run_id, claim.generation)
            else:
                self.shutdown.wait(self.settings.trainer_poll_s)

    def _claim(self) -> Claim | None:
        mine = frozenset(w.claim.run_id for w in self.workers)
        try:
            with transaction(self.factory) as session:
                return claim_run(session, owner=self.settings.trainer_name, now=time.time(),
                                 ttl_s=self.settings.lease_ttl_s, exclude=mine)
        except SQLAlchemyError:
            log.exception("trainer %s: claiming a run failed; retrying",
                          self.settings.trainer_name)
            self.shutdown.wait(1.0)
            return None
