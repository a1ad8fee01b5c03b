"""The runner loop (DESIGN.md "Data flow of one episode", steps 1-4).

Assignment → policy (fetched once per version, sha256-checked, cached on disk) → reset → T ticks
at 10 Hz on the deadline clock → episode spooled to disk, then uploaded with its idempotency key →
repeat, until the run stops, `--episodes N` are done, Ctrl-C, or a safety stop.

Ctrl-C: on the sim the first one finishes the current episode, a second aborts it; on hardware
the first one aborts at once (hold, then torque off): a person pressing Ctrl-C next to a robot
means stop. SIGTERM always aborts. An aborted episode is not uploaded (it is not T steps long).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from dclaw import task
from dclaw.realtime import set_realtime_priority
from robot.backend import Backend, SafetyStop
from robot.client import (
    Assignment,
    LearnerClient,
    NotReady,
    Rejected,
    RunNotRunning,
    ServiceUnavailable,
)
from robot.clock import DeadlineClock, LoopTiming
from robot.policy import NumpyPolicy, PolicyIntegrityError
from robot.safety import SafetyLimits, SafetyMonitor
from robot.spool import Spool, SpoolSender, send

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_SAFETY, EXIT_REJECTED = 0, 1, 3, 4


@dataclass
class RunnerConfig:
    learner_url: str
    run_id: int
    name: str
    token: str | None
    episodes: int | None = None  # None: until the run stops
    paced: bool = True
    spool_dir: Path = field(default_factory=lambda: Path("dclaw-spool"))
    seed: int | None = None
    heartbeat_s: float = 2.0
    max_wait_s: float = 5.0  # longest pause between attempts while the service is away
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    realtime_priority: int | None = None  # SCHED_FIFO for the control loop's thread (Linux)

    @property
    def home(self) -> Path:
        return self.spool_dir / f"run{self.run_id}-{self.name}"


@dataclass
class EpisodeResult:
    body: dict[str, Any]
    episode_return: float
    success: bool
    final_error: float


class _Stop(Exception):
    pass


class Runner:
    def __init__(self, config: RunnerConfig, backend: Backend, console: Console | None = None,
                 make_client: Callable[[], LearnerClient] | None = None):
        self.config, self.backend = config, backend
        self.console = console or Console(stderr=False)
        self._make_client = make_client or (lambda: LearnerClient(
            config.learner_url, config.run_id, config.name, config.token))
        self.client = self._make_client()
        self.spool = Spool(config.home)
        self.policy_dir = config.home / "policies"
        self.policy_dir.mkdir(parents=True, exist_ok=True)
        self._scheduling: tuple[int, os.sched_param] | None = None  # before SCHED_FIFO
        self._policies: dict[tuple[str, int], NumpyPolicy] = {}
        self.rng = np.random.default_rng(config.seed)
        self.monitor = SafetyMonitor(config.limits)
        self.status, self.seq = "idle", 0  # seq: the next episode's sequence number
        self.last_seq: int | None = None  # the last one assigned (what heartbeats report)
        self.details: dict[str, Any] = {**backend.describe()}
        self._events: list[dict[str, Any]] = []  # posted by the heartbeat thread
        self._lock = threading.Lock()
        self._interrupts = 0
        self._abort: str | None = None
        self._halt = threading.Event()
        self._beat = threading.Event()
        self.episodes_done = 0
        self.timings: list[LoopTiming] = []  # the last episodes' per-tick figures (benchmarks)
        self._ticking = threading.Event()  # set while an episode's ticks run
        self.stop_reason = ""
        self.sender = SpoolSender(self.spool, self._make_client, on_sent=self._on_spool_sent)

    # -- signals ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        self._interrupts += 1
        if signum == signal.SIGINT and self.backend.name == "sim" and self._interrupts == 1:
            self.console.print("[yellow]Ctrl-C: stopping after this episode "
                               "(press again to abort it now)[/]")
            return
        self._abort = name

    def abort_requested(self) -> str | None:
        return self._abort

    def _stopping(self) -> bool:
        return self._interrupts > 0 or self._abort is not None

    # -- status for heartbeats ---------------------------------------------------------------
    def _set_status(self, status: str, **details: Any) -> None:
        with self._lock:
            self.status = status
            self.details.update(details)
        self._beat.set()

    def _send_beat_now(self) -> None:
        """Lets the heartbeat thread post the current status before the ticks start."""
        deadline = time.monotonic() + 0.5
        while self._beat.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)

    def _event(self, kind: str, message: str, details: dict[str, Any]) -> None:
        with self._lock:
            self._events.append({"kind": kind, "message": message, "details": details})
        self._beat.set()

    def _post_beat(self, client: LearnerClient) -> None:
        """Posts the queued events, then the status; what the service did not get is kept."""
        with self._lock:
            status, seq = self.status, self.last_seq
            details = {**self.details, "spooled": len(self.spool)}
            events, self._events = self._events, []
        try:
            while events:
                try:
                    client.event(**events[0])
                except Rejected as exc:  # not retryable: say so, keep going
                    log.error("the service refused event %s: %s", events[0], exc)
                events.pop(0)
            client.heartbeat(status, seq, details)
        except (ServiceUnavailable, Rejected) as exc:
            log.debug("heartbeat: %s", exc)
            with self._lock:  # events not posted are kept for the next beat
                self._events[:0] = events

    def _heartbeats(self) -> None:
        client = self._make_client()
        try:
            while not self._halt.is_set():
                self._beat.clear()
                self._post_beat(client)
                self._beat.wait(self.config.heartbeat_s)
                while self._ticking.is_set() and not self._halt.is_set():
                    time.sleep(0.05)  # no HTTP from this thread while the 10 Hz loop runs
            self._post_beat(client)  # the last word: stopped, or why
        finally:
            client.close()

    def _on_spool_sent(self, summary: dict[str, Any]) -> None:
        self.console.print(f"  sent spooled episode seq {summary['seq']} "
                           f"(id {summary['id']}); {len(self.spool)} left")

    # -- waiting --------------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        """Sleeps in short steps, feeding the backend (bus watchdog) and watching for signals."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not self._stopping():
            self.backend.keepalive()
            time.sleep(min(left, 0.1))
        if self._abort:
            raise _Stop(self._abort)

    def _with_service(self, what: str, call: Callable[[], Any]) -> Any:
        """Calls the service until it answers; says once that it is away, and waits."""
        delay, announced = 0.25, False
        while True:
            try:
                result = call()
            except ServiceUnavailable as exc:
                if not announced:
                    self.console.print(f"[yellow]service unavailable ({exc}); waiting to "
                                       f"{what}. {len(self.spool)} episode(s) spooled.[/]")
                    announced = True
                self._set_status("waiting", message=f"service unavailable: cannot {what}")
                self._sleep(delay)
                delay = min(self.config.max_wait_s, delay * 2)
                continue
            if announced:
                self.console.print("[green]service is back[/]")
            return result

    def _first_seq(self) -> int:
        """After the highest seq the service (it records each assignment's) or the spool has."""
        row = self._with_service("read this runner's last episode",
                                 self.client.runner_status)
        seen = [-1]
        if row is not None and row.get("last_seq") is not None:
            seen.append(int(row["last_seq"]))
        if (spooled := self.spool.max_seq()) is not None:
            seen.append(spooled)
        return max(seen) + 1

    def _assignment(self, seq: int) -> Assignment:
        announced = False
        while True:
            if self._stopping():
                raise _Stop("interrupted")
            try:
                return self._with_service("get an assignment",
                                          lambda: self.client.assignment(seq))
            except NotReady as exc:
                if not announced:
                    self._set_status("waiting", message=str(exc))
                    announced = True
                self._sleep(max(0.02, min(exc.retry_after_s, self.config.max_wait_s)))

    def _policy(self, assignment: Assignment) -> NumpyPolicy:
        key = (assignment.policy_kind, assignment.policy_version)
        if (policy := self._policies.get(key)) is not None:
            return policy
        path = self.policy_dir / (f"{assignment.policy_kind}-v{assignment.policy_version}-"
                                  f"{assignment.sha256[:16]}.npz")
        policy = None
        if path.exists():
            try:
                policy = NumpyPolicy.from_bytes(path.read_bytes(), assignment.sha256)
            except PolicyIntegrityError:
                path.unlink()
        if policy is None:
            data, policy = self._with_service(
                f"download policy {key[0]} v{key[1]}", lambda: self.client.policy(assignment))
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        self._policies = {key: policy, **dict(list(self._policies.items())[:3])}
        return policy

    # -- one episode ----------------------------------------------------------------------------
    def _episode(self, assignment: Assignment, policy: NumpyPolicy, seq: int) -> EpisodeResult:
        steps, backend = assignment.episode_steps, self.backend
        monitor = self.monitor
        obs = np.empty((steps + 1, task.OBS_DIM), dtype=np.float32)
        actions = np.empty((steps, task.ACTION_DIM), dtype=np.float32)
        rewards = np.empty(steps, dtype=np.float64)
        stamps = np.empty(steps + 1, dtype=np.float64)
        last_action = np.zeros(task.ACTION_DIM, dtype=np.float32)
        clock = DeadlineClock(task.CONTROL_PERIOD, paced=self.config.paced)
        timing = LoopTiming(task.CONTROL_PERIOD)
        self.timings = [*self.timings[-99:], timing]
        err = 0.0
        for t in range(steps + 1):
            if self._abort:
                raise SafetyStop("signal", f"{self._abort} received during episode seq {seq} "
                                           f"(tick {t} of {steps})", tick=t)
            _, late = clock.wait()
            start, cpu_start = time.monotonic(), time.thread_time()
            state = backend.read()
            err = float(task.target_error(state.valve))
            obs[t] = task.observation(state.qpos, state.valve, last_action, err)
            stamps[t] = start - clock.start
            if t > 0:
                rewards[t - 1] = float(task.reward(state.qpos, state.qvel, err))
            if t < steps:
                action = np.clip(policy.act(obs[t], assignment.deterministic, self.rng), -1, 1)
                targets = task.bound_joint_targets(task.action_to_joint_targets(action),
                                                   state.qpos)
                backend.write(targets)
                actions[t] = last_action = action.astype(np.float32)
            timing.record(late, time.monotonic() - start, time.thread_time() - cpu_start)
            if self.config.paced and backend.name != "sim":  # a hardware safety rule
                monitor.missed_deadlines(timing.streak)
        body = {
            "runner": self.config.name, "seq": seq,
            "policy_kind": assignment.policy_kind, "policy_version": assignment.policy_version,
            "decision_id": assignment.decision_id,
            "observations": obs.tolist(), "actions": actions.tolist(),
            "rewards": rewards.tolist(), "timestamps": stamps.tolist(),
            "timing": timing.summary(),
        }
        return EpisodeResult(body, float(rewards.sum()), bool(task.success(err)), err)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> int:
        """Runs until done; returns the process exit code."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        # Another thread holding the GIL delays a waking tick by up to this interval (5 ms by
        # default): make it short.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        if hasattr(self.backend, "abort_requested"):
            self.backend.abort_requested = self.abort_requested
        beats = threading.Thread(target=self._heartbeats, name="heartbeats", daemon=True)
        code = EXIT_OK
        try:
            try:
                run = self._with_service("read the run", self.client.run)
            except Rejected as exc:
                return self._rejected(exc)
            self.console.print(f"run [bold]{run['id']}[/] {run['name']!r}: {run['algorithm']} "
                               f"({run['preset']}, {run['mode']}), status {run['status']}; "
                               f"runner [bold]{self.config.name}[/] on {self.backend.name}")
            beats.start()
            self.sender.start()
            self._realtime()
            self.seq = self._first_seq()
            self._set_status("connecting")
            self.backend.connect()
            code = self._loop()
        except _Stop as stop:
            self.stop_reason = f"stopped ({stop})"
            self.backend.stop(self.stop_reason)
            self._set_status("stopped", message=self.stop_reason)
        except SafetyStop as stop:
            code = self._safety_stop(stop)
        except ConnectionError as exc:  # the robot (port, motors), not the service
            self.stop_reason = f"cannot connect to the robot: {exc}"
            self.console.print(f"[bold red]{self.stop_reason}[/]")
            self._set_status("stopped", message=self.stop_reason)
            code = EXIT_ERROR
        except Rejected as exc:
            code = self._rejected(exc)
        except Exception as exc:
            log.exception("runner error")
            stop = SafetyStop("exception", f"{type(exc).__name__}: {exc}")
            self._safety_stop(stop)
            code = EXIT_ERROR
        finally:
            self._shutdown(beats)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sys.setswitchinterval(switch_interval)
            if self._scheduling is not None:  # back to what the caller's thread had
                os.sched_setscheduler(0, *self._scheduling)
        return code

    def _realtime(self) -> None:
        """SCHED_FIFO for this (the loop's) thread only: set after the heartbeat and spool
        threads have started, so they stay at normal priority."""
        priority = self.config.realtime_priority
        if priority is None:
            return
        previous = (os.sched_getscheduler(0), os.sched_getparam(0))
        problem = set_realtime_priority(priority)
        if problem is None:
            self._scheduling = previous
            self.console.print(f"control loop at real-time priority {priority} (SCHED_FIFO)")
        else:
            self.console.print(f"[yellow]{problem}; the loop runs at normal priority[/]")

    def _loop(self) -> int:
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if self.config.episodes:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            bar = progress.add_task("starting", total=self.config.episodes)
            while self.config.episodes is None or self.episodes_done < self.config.episodes:
                if self._stopping():
                    self.stop_reason = "stopped by Ctrl-C"
                    break
                seq = self.seq
                progress.update(bar, description=f"seq {seq}: waiting for an assignment")
                self._set_status("waiting", message="waiting for an assignment")
                idle_start = time.monotonic()
                try:
                    assignment = self._assignment(seq)
                except RunNotRunning as exc:
                    self.stop_reason = f"the run is not running: {exc}"
                    self.console.print(f"[yellow]{self.stop_reason}[/]")
                    break
                self.last_seq = seq
                policy = self._policy(assignment)
                idle = time.monotonic() - idle_start
                progress.update(bar, description=f"seq {seq}: resetting")
                self._set_status("resetting", message="")
                reset_start = time.monotonic()
                self.backend.reset()
                reset_s = time.monotonic() - reset_start
                progress.update(bar, description=f"seq {seq}: running "
                                f"{assignment.policy_kind} v{assignment.policy_version}")
                self._set_status("running", episode=seq)
                self._send_beat_now()
                # The ticks own the process: no heartbeat requests, no garbage collection
                # pauses (collected after the episode instead).
                self._ticking.set()
                gc.disable()
                try:
                    result = self._episode(assignment, policy, seq)
                finally:
                    gc.enable()
                    self._ticking.clear()
                gc.collect()
                result.body["timing"].update(reset_s=round(reset_s, 4),
                                             assign_s=round(idle, 4))
                self._finish(result, assignment, progress)
                progress.advance(bar)
        self._set_status("stopped", message=self.stop_reason or "done")
        return EXIT_OK  # _shutdown closes the backend: torque off

    def _finish(self, result: EpisodeResult, assignment: Assignment, progress) -> None:
        seq = result.body["seq"]
        self._set_status("uploading")
        item = self.spool.put(result.body)  # on disk before anything is sent
        summary = send(self.spool, self.client, item)
        where = f"id {summary['id']}" if summary else "[yellow]spooled[/] (service away)"
        if summary is None:
            self.sender.kick()
        timing = result.body["timing"]
        self.episodes_done += 1
        self.seq = seq + 1
        with self._lock:
            self.details.update(
                last_return=round(result.episode_return, 2), episode=seq,
                period_error_p99_ms=timing.get("period_error_p99_ms"),
                compute_p99_ms=timing.get("compute_p99_ms"), overruns=timing["overruns"])
        mark = "[green]success[/]" if result.success else "no success"
        progress.console.print(
            f"seq {seq:>4}  {assignment.policy_kind} v{assignment.policy_version:<3} "
            f"{assignment.reason:<9} return {result.episode_return:7.1f}  {mark}  late p99 "
            f"{timing.get('period_error_p99_ms', 0):.2f} ms  compute p99 "
            f"{timing.get('compute_p99_ms', 0):.2f} ms  overruns {int(timing['overruns'])}  "
            f"{where}", soft_wrap=True)

    def _safety_stop(self, stop: SafetyStop) -> int:
        self.stop_reason = f"safety stop: {stop.message}"
        self.backend.stop(self.stop_reason)
        self.console.print(f"[bold red]SAFETY STOP[/] {stop.message}. The claw was held, then "
                           "its torque turned off.")
        self._event(**stop.as_event())
        self._set_status("safety_stop", message=stop.message)
        return EXIT_SAFETY

    def _rejected(self, exc: Rejected) -> int:
        hint = {401: "set DCLAW_RUNNER_TOKEN to the service's runner token",
                403: "set DCLAW_RUNNER_TOKEN to the service's runner token",
                404: f"no run {self.config.run_id} on {self.config.learner_url}: list them with "
                     f"GET /api/v1/runs"}.get(exc.status, "")
        self.console.print(f"[bold red]the service refused:[/] {exc.detail}"
                           + (f" ({hint})" if hint else ""))
        self.stop_reason = f"refused: {exc.detail}"
        self.backend.stop(self.stop_reason)
        self._set_status("stopped", message=self.stop_reason)
        return EXIT_REJECTED

    def _shutdown(self, beats: threading.Thread) -> None:
        self.backend.close()
        if self.sender.is_alive():  # a last chance to send what is spooled, then leave it
            deadline = time.monotonic() + 5.0
            self.sender.kick()
            while len(self.spool) and time.monotonic() < deadline and not self._abort:
                time.sleep(0.1)
            self.sender.halt()
            self.sender.join(timeout=15)
        left = len(self.spool)
        if left:
            self.console.print(f"[yellow]{left} episode(s) stay spooled in {self.spool.dir}; "
                               "they are sent the next time this runner starts[/]")
        self._halt.set()
        self._beat.set()
        if beats.is_alive():
            beats.join(timeout=5)
        self.client.close()
        self.console.print(f"runner {self.config.name}: {self.episodes_done} episode(s); "
                           f"{self.stop_reason or 'done'}")
