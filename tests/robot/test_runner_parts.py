"""The runner's parts against facts: the deadline clock, loop timing, the spool, the safety
checks, the service client's answers, and the loop's stops with a scripted robot and service."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import numpy as np
import pytest
from rich.console import Console
from robot_testkit import policy_document, scripted_service, service_client

from dclaw import task
from dclaw.realtime import current_policy
from robot.backend import RobotState, SafetyStop
from robot.client import NotReady, Rejected, RunNotRunning, ServiceUnavailable
from robot.clock import DeadlineClock, LoopTiming
from robot.runner import EXIT_SAFETY, Runner, RunnerConfig
from robot.safety import SafetyLimits, SafetyMonitor
from robot.spool import Spool, SpoolSender


class FakeTime:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_deadlines_are_absolute_so_a_late_tick_does_not_shift_the_rest():
    now = FakeTime()
    clock = DeadlineClock(0.1, paced=False, now=now)
    assert [clock.deadline(k) - clock.start for k in (0, 1, 10)] == pytest.approx([0, 0.1, 1.0])
    clock.wait()
    now.t += 0.35  # a tick ran long: ticks 1..3 are due already, tick 4 stays at +0.4
    assert clock.deadline(4) - clock.start == pytest.approx(0.4)


def test_paced_clock_waits_for_each_deadline_and_keeps_the_rate():
    clock = DeadlineClock(0.02, paced=True)
    lateness = [clock.wait()[1] for _ in range(11)]
    elapsed = time.monotonic() - clock.start
    assert elapsed == pytest.approx(0.2, abs=0.01)  # 10 periods, no drift
    assert max(lateness) < 0.005


def test_loop_timing_counts_overruns_and_streaks_and_summarises_in_ms():
    timing = LoopTiming(period=0.1)
    for late, work in [(0.0, 0.002), (0.0, 0.12), (0.03, 0.09), (0.0, 0.001)]:
        timing.record(late, work, cpu=work / 4)
    assert timing.overruns == 2 and timing.streak == 0
    summary = timing.summary()
    assert summary["ticks"] == 4 and summary["overruns"] == 2
    assert summary["period_error_max_ms"] == pytest.approx(30.0)
    assert summary["compute_max_ms"] == pytest.approx(120.0)
    assert summary["cpu_max_ms"] == pytest.approx(30.0)
    timing.record(0.0, 0.2)
    timing.record(0.0, 0.2)
    assert timing.streak == 2


def test_safety_monitor_stops_on_each_limit_with_a_message_naming_the_motor():
    limits = SafetyLimits(max_current_ma=1000, current_reads=2, max_temperature_c=70,
                          max_failed_reads=3, max_missed_deadlines=3)
    monitor = SafetyMonitor(limits)
    state = RobotState(np.zeros(9), np.zeros(9), 0.0, 0.0, current_ma={11: 1200.0})
    monitor.check(state)  # one reading over the limit is a spike
    with pytest.raises(SafetyStop, match="motor 11: current 1200 mA") as stop:
        monitor.check(state)
    assert stop.value.cause == "current" and stop.value.details["motor"] == 11

    hot = RobotState(np.zeros(9), np.zeros(9), 0.0, 0.0, temperature_c={21: 81.0})
    with pytest.raises(SafetyStop, match="motor 21: temperature 81") as stop:
        SafetyMonitor(limits).check(hot)
    assert stop.value.as_event()["details"]["cause"] == "temperature"

    monitor = SafetyMonitor(limits)
    failed = RobotState(np.zeros(9), np.zeros(9), 0.0, 0.0, ok=False)
    monitor.check(failed)
    monitor.check(RobotState(np.zeros(9), np.zeros(9), 0.0, 0.0))  # a success resets the count
    monitor.check(failed)
    monitor.check(failed)
    with pytest.raises(SafetyStop, match="3 consecutive bus reads failed"):
        monitor.check(failed)
    with pytest.raises(SafetyStop, match="3 consecutive ticks missed"):
        monitor.missed_deadlines(3)


def _body(seq: int) -> dict:
    return {"runner": "r", "seq": seq, "observations": [[0.5] * 21]}


def test_spool_writes_atomically_lists_oldest_first_and_survives_a_restart(tmp_path):
    spool = Spool(tmp_path / "spool")
    keys = {seq: spool.put(_body(seq)).key for seq in (12, 3, 7)}
    assert not list(spool.dir.glob("*.tmp*"))
    again = Spool(tmp_path / "spool")  # a new process
    assert [item.seq for item in again.pending()] == [3, 7, 12]
    assert {item.seq: item.key for item in again.pending()} == keys
    assert again.max_seq() == 12
    (spool.dir / "episode-000000000001.json").write_text("{truncated")
    assert [item.seq for item in again.pending()] == [3, 7, 12]
    assert (spool.rejected_dir / "episode-000000000001.json").exists()


def test_client_maps_the_services_answers_to_what_the_runner_does():
    answers = iter([
        httpx.Response(503, json={"status": "not_ready", "retry_after_ms": 250, "detail": "wait"}),
        httpx.Response(409, json={"status": "refused", "detail": "run 1 is stopped"}),
        httpx.Response(403, json={"detail": "bad token"}),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(503, text="<html>maintenance</html>"),
    ])

    def handler(request):
        return next(answers)

    client = service_client(handler)()
    with pytest.raises(NotReady) as not_ready:
        client.assignment(0)
    assert not_ready.value.retry_after_s == 0.25
    with pytest.raises(RunNotRunning, match="stopped"):
        client.assignment(0)
    with pytest.raises(Rejected) as rejected:
        client.assignment(0)
    assert rejected.value.status == 403
    with pytest.raises(ServiceUnavailable):
        client.assignment(0)
    with pytest.raises(ServiceUnavailable):
        client.assignment(0)

    def refuse(request):
        raise httpx.ConnectError("connection refused")

    with pytest.raises(ServiceUnavailable, match="unreachable"):
        service_client(refuse)().upload({}, "key-12345678")


def test_spool_sender_keeps_keys_and_order_while_the_service_is_away(tmp_path):
    spool = Spool(tmp_path / "spool")
    for seq in (0, 1, 2):
        spool.put(_body(seq))
    up = threading.Event()
    received: list[tuple[int, str]] = []

    def handler(request):
        if not up.is_set():
            raise httpx.ConnectError("down")
        body = json.loads(request.content)
        received.append((body["seq"], request.headers["Idempotency-Key"]))
        if body["seq"] == 1:
            return httpx.Response(422, json={"detail": "observations must be 41 x 21"})
        return httpx.Response(201, json={"id": body["seq"] + 1, "seq": body["seq"]})

    sender = SpoolSender(spool, service_client(handler), min_backoff=0.05, max_backoff=0.1)
    sender.start()
    time.sleep(0.3)
    assert len(spool) == 3 and sender.last_error  # nothing lost while the service is away
    keys = {item.seq: item.key for item in spool.pending()}
    up.set()
    sender.kick()
    deadline = time.monotonic() + 5
    while len(spool) and time.monotonic() < deadline:
        time.sleep(0.02)
    sender.halt()
    sender.join(5)
    assert len(spool) == 0
    assert [seq for seq, _ in received] == [0, 1, 2]
    assert all(key == keys[seq] for seq, key in received)
    # The refused one is kept aside with the service's reason, not deleted.
    assert "41 x 21" in (spool.rejected_dir / "episode-000000000001.json.reason.txt").read_text()


class ScriptedRobot:
    """A backend whose ticks take `work_s` (to miss deadlines) and that records stops."""

    name = "scripted"

    def __init__(self, work_s: float = 0.0):
        self.work_s, self.stops, self.writes, self.closed = work_s, [], 0, False

    def connect(self):
        pass

    def describe(self):
        return {"backend": self.name}

    def reset(self):
        return self.read()

    def read(self):
        return RobotState(task.RESET_POSE.copy(), np.zeros(9), 0.0, time.monotonic())

    def write(self, targets):
        assert np.all(targets >= task.JOINT_LOW) and np.all(targets <= task.JOINT_HIGH)
        self.writes += 1
        time.sleep(self.work_s)

    def keepalive(self):
        pass

    def stop(self, reason):
        self.stops.append(reason)

    def close(self):
        self.closed = True


def test_a_streak_of_missed_deadlines_is_a_safety_stop_reported_to_the_service(tmp_path):
    log: list = []
    robot = ScriptedRobot(work_s=0.12)  # every tick overruns the 100 ms period
    config = RunnerConfig(learner_url="http://learner", run_id=1, name="r", token="tok",
                          episodes=1, spool_dir=tmp_path, heartbeat_s=0.05,
                          limits=SafetyLimits(max_missed_deadlines=3))
    service = service_client(scripted_service(policy_document(), log))
    runner = Runner(config, robot, make_client=service)
    assert runner.run() == EXIT_SAFETY
    assert robot.writes == 3 and robot.closed
    assert any("3 consecutive ticks missed" in reason for reason in robot.stops)
    events = [body for method, path, body in log if path.endswith("/events")]
    assert events and events[0]["kind"] == "safety_stop"
    assert events[0]["details"]["cause"] == "deadline"
    beats = [body for method, path, body in log if path.endswith("/heartbeat")]
    assert beats[-1]["status"] == "safety_stop"
    assert not [p for _, p, _ in log if p.endswith("/episodes")]  # a partial episode is not sent


def test_one_episode_on_a_scripted_robot_is_spooled_then_uploaded(tmp_path):
    log: list = []
    robot = ScriptedRobot()
    config = RunnerConfig(learner_url="http://learner", run_id=1, name="r", token="tok",
                          episodes=1, paced=False, spool_dir=tmp_path, heartbeat_s=0.05)
    service = service_client(scripted_service(policy_document(), log))
    runner = Runner(config, robot, make_client=service)
    assert runner.run() == 0
    uploads = [body for method, path, body in log if path.endswith("/episodes")]
    assert len(uploads) == 1
    body = uploads[0]
    assert np.shape(body["observations"]) == (41, 21) and np.shape(body["actions"]) == (40, 9)
    assert len(body["rewards"]) == 40 and len(body["timestamps"]) == 41
    assert body["timing"]["ticks"] == 41 and "compute_p99_ms" in body["timing"]
    assert 0 <= body["timing"]["cpu_p50_ms"] <= body["timing"]["compute_max_ms"]
    assert len(runner.spool) == 0 and robot.writes == 40


class PolicyRecordingRobot(ScriptedRobot):
    """Notes the scheduling policy of the thread that writes each action."""

    def __init__(self):
        super().__init__()
        self.policies: set[str] = set()

    def write(self, targets):
        self.policies.add(current_policy())
        super().write(targets)


def test_realtime_priority_runs_the_loop_at_sched_fifo_and_gives_it_back(tmp_path):
    robot = PolicyRecordingRobot()
    config = RunnerConfig(learner_url="http://learner", run_id=1, name="r", token="tok",
                          episodes=1, paced=False, spool_dir=tmp_path, heartbeat_s=0.05,
                          realtime_priority=10)
    runner = Runner(config, robot, make_client=service_client(
        scripted_service(policy_document(), [])))
    before = current_policy()
    assert runner.run() == 0
    assert robot.policies == {"fifo"} and robot.writes == 40  # root here and in CI
    assert current_policy() == before == "other"


def test_realtime_priority_refused_warns_and_the_episode_still_runs(tmp_path, monkeypatch):
    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    robot = PolicyRecordingRobot()
    console = Console(record=True, width=200)
    config = RunnerConfig(learner_url="http://learner", run_id=1, name="r", token="tok",
                          episodes=1, paced=False, spool_dir=tmp_path, heartbeat_s=0.05,
                          realtime_priority=50)
    runner = Runner(config, robot, console=console, make_client=service_client(
        scripted_service(policy_document(), [])))
    assert runner.run() == 0
    assert robot.writes == 40 and robot.policies == {"other"}
    text = console.export_text()
    assert "real-time priority 50 not permitted" in text and "limits.conf" in text
