"""The Dynamixel backend end to end through the real dynamixel-sdk, on the bus emulator (its own
process, a pty): set-up, the scripted reset, a full episode with a policy, and every safety stop
triggered by a fault injected mid-episode — each ends with the claw's torque off."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import dynamixel_sdk as dxl
import numpy as np
import pytest
from robot_testkit import policy_document, scripted_service, service_client

from dclaw import hardware as hw
from dclaw import task
from dclaw.protocol2 import BROADCAST_ID, build_packet
from robot.dynamixel import DynamixelBackend
from robot.runner import EXIT_ERROR, EXIT_SAFETY, Runner, RunnerConfig
from robot.safety import SafetyLimits
from sim.emulator_process import EmulatorProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def emulator():
    with EmulatorProcess() as emu:
        yield emu


def motors(emu: EmulatorProcess) -> dict[int, dict]:
    return {int(k): v for k, v in json.loads(emu.command("status")[0])["motors"].items()}


def tolerant(**overrides) -> SafetyLimits:
    """Limits for tests on a shared 2-core machine: the emulator process may be scheduled late,
    so a few failed reads in a row are tolerated unless a test is about them."""
    return SafetyLimits(**{"max_failed_reads": 8, **overrides})


def test_connect_reads_the_models_and_sets_up_every_motor(emulator):
    robot = DynamixelBackend(emulator.port, limits=tolerant(watchdog_s=0.5))
    robot.connect()
    try:
        assert robot.models == {m: "XM430-W210" for m in robot.ids}
        assert robot.current_unit[11] == 2.69
        for motor in robot.ids:
            assert robot._read(motor, hw.BUS_WATCHDOG) == 25  # 500 ms in 20 ms units
            assert robot._read(motor, hw.RETURN_DELAY_TIME) == 0
        state = robot.read()
        # The emulator starts at the reset pose; with the torque off the joints sag a little.
        assert np.allclose(state.qpos, task.RESET_POSE, atol=0.1)
    finally:
        robot.close()
    assert all(m["torque"] == 0 for m in motors(emulator).values())


class RecordingPort:
    """What the SDK's packet builders need of a port; keeps what they write."""

    def __init__(self):
        self.is_using, self.written = False, []

    def clearPort(self):
        pass

    def writePort(self, packet):
        self.written.append(bytes(packet))
        return len(packet)

    def setPacketTimeout(self, length):
        self.timeout_bytes = length


@pytest.mark.parametrize("hot", [0, 9])
def test_the_packets_built_once_are_the_sdks_packets_byte_for_byte(hot):
    """The backend writes its own Bulk Read and goal packets; the SDK's builders must agree."""
    ids = [*hw.CLAW_IDS, hw.VALVE_ID]
    robot, sdk_port, own_port = DynamixelBackend(), RecordingPort(), RecordingPort()
    robot._ph = dxl.PacketHandler(2.0)
    param = [b for m in ids for b in (m, 126, 0, 21 if m == ids[hot] else 10, 0)]
    robot._ph.bulkReadTx(sdk_port, param, len(param), False)
    robot._port = own_port
    assert robot._send(build_packet(BROADCAST_ID, dxl.INST_BULK_READ, bytes(param))) == \
        dxl.COMM_SUCCESS
    assert own_port.written == sdk_port.written and own_port.is_using
    own_port.is_using = False  # the replies' readRx would release it

    goals = dict(zip(hw.CLAW_IDS, np.linspace(-0.4, 1.2, 9).tolist(), strict=True))
    writer = dxl.GroupSyncWrite(RecordingPort(), robot._ph, *hw.GOAL_POSITION)
    for motor, angle in goals.items():
        ticks = robot.calibration[motor].angle_to_ticks(angle)
        writer.addParam(motor, list(ticks.to_bytes(4, "little")))
    writer.txPacket()
    robot._write_goals(goals)
    assert own_port.written[-1] == writer.port.written[-1] and not own_port.is_using


def test_missing_motors_are_named(tmp_path):
    with EmulatorProcess("--fault", "silent 21") as emu:
        robot = DynamixelBackend(emu.port)
        with pytest.raises(ConnectionError, match=r"motor\(s\) \[21\]"):
            robot.connect()


def test_reset_turns_the_valve_back_and_brings_the_claw_to_the_reset_pose(emulator):
    robot = DynamixelBackend(emulator.port, limits=tolerant())
    robot.connect()
    try:
        # Turn the valve to 2 rad with its motor and move the top joints away.
        robot._set_torque([hw.VALVE_ID, *hw.TOP_IDS], True)
        robot._move({hw.VALVE_ID: 2.0, **{m: 0.4 for m in hw.TOP_IDS}}, 2.0, 5.0)
        moved = robot.read()
        assert moved.valve == pytest.approx(2.0, abs=0.1)
        assert moved.qpos[0] == pytest.approx(0.4, abs=0.1)

        state = robot.reset()
        assert np.all(np.abs(state.qpos - task.RESET_POSE) < np.radians(5))
        assert abs(task.wrap_angle(state.valve)) < np.radians(5)
        status = motors(emulator)
        assert status[hw.VALVE_ID]["torque"] == 0  # the episode starts with the valve free
        assert all(status[m]["torque"] == 1 for m in hw.CLAW_IDS)
    finally:
        robot.close()


@pytest.mark.timeout(120)
def test_a_reset_that_cannot_reach_the_pose_retries_then_stops_and_says_which_motor(emulator):
    from robot.backend import ResetFailed

    # A stuck joint: current limits are raised so that only the pose check can catch it.
    robot = DynamixelBackend(emulator.port, limits=tolerant(max_current_ma=1e6))
    robot.connect()
    robot._set_torque([21], True)
    robot._move({21: 0.0}, 2.0, 3.0)  # away from its reset angle (-pi/3)
    emulator.command("fault stuck 21")
    try:
        with pytest.raises(ResetFailed, match=r"motors \[21\] are still more than 5°") as failed:
            robot.reset()
        assert failed.value.details["motors"] == [21]
        assert "3 disentangle attempts" in failed.value.message
    finally:
        robot.close()
    emulator.command("clear")
    assert all(m["torque"] == 0 for m in motors(emulator).values())


def run_episode(emu: EmulatorProcess, tmp_path, *, limits: SafetyLimits | None = None,
                inject: str | None = None) -> tuple[int, Runner, list]:
    """One paced episode on the emulated bus against a scripted service; `inject` is sent to
    the emulator 0.5 s into the episode."""
    log: list = []
    robot = DynamixelBackend(emu.port, limits=limits or tolerant())
    config = RunnerConfig(learner_url="http://learner", run_id=1, name="r", token="tok",
                          episodes=1, spool_dir=tmp_path, heartbeat_s=0.1,
                          limits=limits or tolerant())
    runner = Runner(config, robot,
                    make_client=service_client(scripted_service(policy_document(), log)))

    def inject_when_running():
        while runner.status != "running":
            time.sleep(0.01)
        time.sleep(0.5)
        emu.command(inject)

    if inject:
        threading.Thread(target=inject_when_running, daemon=True).start()
    return runner.run(), runner, log


def sent(log: list, endpoint: str) -> list[dict]:
    return [body for _, path, body in log if path.endswith(endpoint)]


def test_a_full_episode_over_the_bus_follows_the_policy(emulator, tmp_path):
    code, runner, log = run_episode(emulator, tmp_path)
    assert code == 0, runner.stop_reason
    (body,) = sent(log, "/episodes")
    obs, actions = np.array(body["observations"]), np.array(body["actions"])
    assert obs.shape == (41, 21) and actions.shape == (40, 9)
    assert body["timing"]["ticks"] == 41
    qpos = obs[:, task.OBS_CLAW_QPOS]
    targets = task.bound_joint_targets(task.action_to_joint_targets(actions), qpos[:-1])
    # The servos follow the goals written each tick: every tick closes part of the gap, and the
    # joints that moved, moved toward their goal.
    before = np.abs(qpos[:-1] - targets).mean()
    after = np.abs(qpos[1:] - targets).mean()
    assert after < 0.8 * before
    moved = np.abs(qpos[1:] - qpos[:-1]) > 0.02
    toward = np.sign(qpos[1:] - qpos[:-1]) == np.sign(targets - qpos[:-1])
    assert toward[moved].mean() > 0.9
    assert np.ptp(qpos, axis=0).max() > 0.05  # the claw moved
    assert np.allclose(obs[1:, task.OBS_LAST_ACTION], actions, atol=1e-6)
    assert all(m["torque"] == 0 for m in motors(emulator).values())  # released at the end


# (command, cause, what the stop says). Overheating latches the error bit and reads hot: the
# runner sees whichever its next reading shows first (the alert bit, or the temperature read
# in turn, each motor once a second).
FAULTS = [
    ("fault hw_error 11 overload", "hardware_error", "motor 11: hardware error (overload)"),
    ("fault overheat 21", "hardware_error|temperature", "motor 21: "),
    ("fault current 12 2000", "current", "motor 12: current 1999 mA"),
    ("fault stuck 31", "current", "motor 31: current"),
    ("fault drop 1.0", "bus", "consecutive bus reads failed"),
    ("fault silent 50", "bus", "consecutive bus reads failed"),
]


@pytest.mark.parametrize(("inject", "cause", "message"), FAULTS,
                         ids=[f[0].split()[1] for f in FAULTS])
def test_each_fault_is_a_safety_stop_that_turns_the_torque_off(emulator, tmp_path, inject,
                                                               cause, message):
    limits = tolerant(max_failed_reads=3) if cause == "bus" else tolerant()
    code, runner, log = run_episode(emulator, tmp_path, limits=limits, inject=inject)
    assert code == EXIT_SAFETY, runner.stop_reason
    assert message in runner.stop_reason
    (event,) = sent(log, "/events")
    assert event["kind"] == "safety_stop" and event["details"]["cause"] in cause.split("|")
    assert sent(log, "/heartbeat")[-1]["status"] == "safety_stop"
    assert not sent(log, "/episodes")  # the aborted episode is not uploaded
    emulator.command("clear")
    assert all(m["torque"] == 0 for k, m in motors(emulator).items() if k in hw.CLAW_IDS)


def test_temperature_above_the_runners_limit_stops(emulator, tmp_path):
    # The emulated servos idle at 35 °C; a 30 °C limit trips at the first temperature read.
    code, runner, log = run_episode(emulator, tmp_path,
                                    limits=tolerant(max_temperature_c=30))
    assert code == EXIT_SAFETY
    assert "temperature 35 °C above the limit 30 °C" in runner.stop_reason
    assert sent(log, "/events")[0]["details"]["cause"] == "temperature"
    assert all(m["torque"] == 0 for m in motors(emulator).values())


def test_missed_deadlines_and_exceptions_stop_the_robot(emulator, tmp_path, monkeypatch):
    from robot.policy import NumpyPolicy

    act = NumpyPolicy.act

    def slow(self, obs, deterministic=False, rng=None):
        time.sleep(0.15)  # longer than the 100 ms period
        return act(self, obs, deterministic, rng)

    monkeypatch.setattr(NumpyPolicy, "act", slow)
    code, runner, log = run_episode(emulator, tmp_path / "a")
    assert code == EXIT_SAFETY and "consecutive ticks missed" in runner.stop_reason
    assert all(m["torque"] == 0 for m in motors(emulator).values())

    def broken(self, obs, deterministic=False, rng=None):
        raise FloatingPointError("the policy blew up")

    monkeypatch.setattr(NumpyPolicy, "act", broken)
    code, runner, log = run_episode(emulator, tmp_path / "b")
    assert code == EXIT_ERROR
    event = sent(log, "/events")[0]
    assert event["details"]["cause"] == "exception" and "blew up" in event["message"]
    assert all(m["torque"] == 0 for m in motors(emulator).values())


WATCHED_LOOP = """
import sys, time
from robot.dynamixel import DynamixelBackend
from robot.safety import SafetyLimits
robot = DynamixelBackend(sys.argv[1], limits=SafetyLimits(watchdog_s=0.2, max_failed_reads=8))
robot.connect()
robot._set_torque(robot.claw_ids, True)
print("running", flush=True)
t = 0
while True:
    state = robot.read()
    t += 1
    robot.write(state.qpos + 0.1 * (-1) ** (t // 10))
    time.sleep(0.05)
"""


def test_the_bus_watchdog_stops_the_motors_when_the_runner_dies(emulator):
    loop = subprocess.Popen([sys.executable, "-c", WATCHED_LOOP, emulator.port],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert loop.stdout.readline().strip() == "running"
        time.sleep(1.0)
        assert all(m["watchdog"] == 10 for k, m in motors(emulator).items() if k in hw.CLAW_IDS)
        loop.kill()  # no clean-up of any kind
        loop.wait(10)
        time.sleep(0.6)
        status = motors(emulator)
        for motor in hw.CLAW_IDS:
            assert status[motor]["watchdog"] == -1  # fired (0xFF): the motor stopped by itself
            assert abs(status[motor]["goal"] - status[motor]["position"]) < 30  # holding still
    finally:
        loop.kill()
