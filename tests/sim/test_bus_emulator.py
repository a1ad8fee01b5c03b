"""`dclaw emulate` as the hardware backend sees it: a real process on a pty, the real dynamixel-sdk.

One emulator serves the module; before each test every fault is cleared and every motor rebooted
(torque off, RAM defaults, hardware errors cleared), so tests do not see each other's state.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
from dataclasses import dataclass

import dynamixel_sdk as dxl
import pytest

from dclaw import hardware as hw
from dclaw import task
from dclaw.protocol2 import BROADCAST_ID, ErrorCode, Instruction, PacketParser, build_packet
from sim.bus_emulator import REBOOT_S, BusEmulator
from sim.emulator_process import EmulatorProcess

pytestmark = pytest.mark.timeout(120)

MOTORS = (*hw.CLAW_IDS, hw.VALVE_ID)
CAL = hw.DEFAULT_CALIBRATION
DEG = math.pi / 180


def retried(call, attempts=3):
    """Calls an SDK function until its result is COMM_SUCCESS: on a loaded machine the emulator
    process may now and then be scheduled too late for the SDK's 34 ms timeout."""
    for _ in range(attempts):
        out = call()
        result = out[1] if isinstance(out, tuple) and len(out) == 3 else \
            out[0] if isinstance(out, tuple) else out
        if result == dxl.COMM_SUCCESS:
            break
    assert result == dxl.COMM_SUCCESS, dxl.PacketHandler(2.0).getTxRxResult(result)
    return out


@dataclass
class Bus:
    port: dxl.PortHandler
    ph: dxl.Protocol2PacketHandler

    def read(self, motor: int, field: tuple[int, int]) -> tuple[int, int]:
        """(value, status error byte); the value signed as the item is."""
        address, size = field
        data, _, error = retried(lambda: self.ph.readTxRx(self.port, motor, address, size))
        return int.from_bytes(bytes(data), "little", signed=size > 1), error

    def value(self, motor: int, field: tuple[int, int]) -> int:
        return self.read(motor, field)[0]

    def write(self, motor: int, field: tuple[int, int], value: int) -> int:
        """The status error byte of the write."""
        address, size = field
        data = list(value.to_bytes(size, "little", signed=value < 0))
        return retried(lambda: self.ph.writeTxRx(self.port, motor, address, size, data))[1]

    def sync_write(self, field: tuple[int, int], values: dict[int, int]) -> None:
        writer = dxl.GroupSyncWrite(self.port, self.ph, *field)
        for motor, value in values.items():
            writer.addParam(motor, list(value.to_bytes(field[1], "little", signed=value < 0)))
        assert writer.txPacket() == dxl.COMM_SUCCESS

    def ping(self, motor: int) -> int:
        """The result of one ping (no retry: for faults)."""
        return self.ph.ping(self.port, motor)[1]

    def answers(self, motor: int) -> bool:
        return retried(lambda: self.ph.ping(self.port, motor))[1] == dxl.COMM_SUCCESS


@pytest.fixture(scope="module")
def emulator(dclaw_cmd):
    with EmulatorProcess(command=dclaw_cmd) as emu:
        yield emu


@pytest.fixture(scope="module")
def bus(emulator):
    port = dxl.PortHandler(emulator.port)
    assert port.openPort() and port.setBaudRate(1_000_000)
    yield Bus(port, dxl.PacketHandler(2.0))
    port.closePort()


@pytest.fixture(autouse=True)
def fresh_motors(request):
    if "bus" not in request.fixturenames:
        yield
        return
    emulator, bus = request.getfixturevalue("emulator"), request.getfixturevalue("bus")
    assert emulator.command("clear") == ["ok clear"]
    bus.ph.reboot(bus.port, dxl.BROADCAST_ID)
    time.sleep(REBOOT_S + 0.05)
    yield
    assert emulator.returncode is None, emulator.stderr()


def ticks(motor: int, angle: float) -> int:
    return CAL[motor].angle_to_ticks(angle)


def angle(motor: int, value: int) -> float:
    return CAL[motor].ticks_to_angle(value)


def bulk_read(bus: Bus, motors=MOTORS) -> dict[int, tuple[int, int, int]]:
    """(current, velocity, position) per motor, one bulk read of address 126, 10 bytes."""
    reader = dxl.GroupBulkRead(bus.port, bus.ph)
    for motor in motors:
        reader.addParam(motor, *hw.PRESENT_CUR_VEL_POS)
    retried(reader.txRxPacket)
    return {m: struct.unpack("<hii", bytes(reader.data_dict[m][0])) for m in motors}


# -- the protocol ------------------------------------------------------------------------------
def test_ping_returns_each_motors_model_number(bus):
    for motor in MOTORS:
        assert retried(lambda m=motor: bus.ph.ping(bus.port, m)) == (1030, dxl.COMM_SUCCESS, 0)
    assert bus.ping(hw.GUIDE_ID) == dxl.COMM_RX_TIMEOUT  # no --guide


def test_broadcast_ping_lists_every_motor(bus):
    found, result = bus.ph.broadcastPing(bus.port)
    assert result == dxl.COMM_SUCCESS
    assert sorted(found) == sorted(MOTORS)
    assert all(model == 1030 for model, _firmware in found.values())


def test_torque_enable_reads_back_and_rejects_out_of_range_values(bus):
    assert bus.value(10, hw.TORQUE_ENABLE) == 0
    assert bus.write(10, hw.TORQUE_ENABLE, 1) == 0
    assert bus.value(10, hw.TORQUE_ENABLE) == 1
    assert bus.write(10, hw.TORQUE_ENABLE, 2) == ErrorCode.DATA_RANGE
    assert bus.value(10, hw.TORQUE_ENABLE) == 1


def test_control_table_access_rules(bus):
    assert bus.write(10, hw.PRESENT_POSITION, 0) == ErrorCode.ACCESS  # read-only
    assert bus.write(10, (49, 2), 0) == ErrorCode.DATA_LENGTH  # half of Max Position Limit
    assert bus.write(10, hw.GOAL_POSITION, 5000) == ErrorCode.DATA_LIMIT  # beyond 48
    bus.write(10, hw.TORQUE_ENABLE, 1)
    assert bus.write(10, hw.RETURN_DELAY_TIME, 0) == ErrorCode.ACCESS  # EEPROM, torque on
    bus.write(10, hw.TORQUE_ENABLE, 0)
    assert bus.write(10, hw.RETURN_DELAY_TIME, 0) == 0
    data, result, error = bus.ph.readTxRx(bus.port, 10, 200, 4)
    assert (result, error, len(data)) == (dxl.COMM_SUCCESS, ErrorCode.ACCESS, 4)
    assert bus.value(10, hw.PRESENT_INPUT_VOLTAGE) == 120
    assert bus.value(10, hw.TEMPERATURE_LIMIT) == 80
    assert 30 <= bus.value(10, hw.PRESENT_TEMPERATURE) <= 45


def test_a_value_that_needs_byte_stuffing_round_trips(bus):
    value = struct.unpack("<i", b"\xff\xff\xfd\xff")[0]  # Homing Offset (20): FF FF FD on the wire
    assert bus.write(11, (20, 4), value) == 0
    assert bus.read(11, (20, 4)) == (value, 0)


def test_a_bad_crc_gets_a_crc_error_and_garbage_is_skipped(bus):
    packet = bytearray(build_packet(10, Instruction.READ, struct.pack("<HH", 132, 4)))
    packet[-1] ^= 0xFF
    bus.port.clearPort()
    bus.port.writePort(b"\x00\x13\xff\xfd garbage \xff\xff" + bytes(packet))
    bus.port.setPacketTimeout(11)
    status, result = bus.ph.rxPacket(bus.port, False)
    assert result == dxl.COMM_SUCCESS
    assert status[4] == 10 and status[8] == ErrorCode.CRC
    bus.port.writePort(b"\xff\xff\xfd\x00\x0a\xff")  # a broken header: the next packet still counts
    assert retried(lambda: bus.ph.ping(bus.port, 10)) == (1030, dxl.COMM_SUCCESS, 0)


def test_sync_read_and_fast_sync_read(bus):
    for fast in (False, True):
        reader = dxl.GroupSyncRead(bus.port, bus.ph, 0, 7)  # model number .. firmware version
        for motor in MOTORS:
            reader.addParam(motor)
        retried(reader.fastSyncRead if fast else reader.txRxPacket)
        for motor in MOTORS:
            assert reader.getData(motor, 0, 2) == 1030
            assert reader.getData(motor, 6, 1) == 46
    reader = dxl.GroupSyncRead(bus.port, bus.ph, *hw.PRESENT_POSITION)
    for motor in MOTORS:
        reader.addParam(motor)
    retried(reader.fastSyncRead)
    assert reader.getData(hw.VALVE_ID, *hw.PRESENT_POSITION) == ticks(hw.VALVE_ID, 0.0)


def test_bulk_write_and_reg_write_action(bus):
    writer = dxl.GroupBulkWrite(bus.port, bus.ph)
    writer.addParam(10, *hw.LED, [1])
    writer.addParam(11, *hw.PROFILE_VELOCITY, list((77).to_bytes(4, "little")))
    assert writer.txPacket() == dxl.COMM_SUCCESS
    assert bus.value(10, hw.LED) == 1 and bus.value(11, hw.PROFILE_VELOCITY) == 77
    assert retried(lambda: bus.ph.regWriteTxRx(bus.port, 12, *hw.LED, [1])) == (0, 0)
    assert bus.value(12, hw.LED) == 0 and bus.value(12, (69, 1)) == 1
    bus.ph.action(bus.port, dxl.BROADCAST_ID)
    assert bus.value(12, hw.LED) == 1 and bus.value(12, (69, 1)) == 0


def test_reboot_clears_a_hardware_error(bus, emulator):
    bus.write(11, hw.TORQUE_ENABLE, 1)
    assert emulator.command("fault hw_error 11 overload") == ["ok fault hw_error 11 overload"]
    status, error = bus.read(11, hw.HARDWARE_ERROR_STATUS)
    assert status == 1 << 5 and error & hw.STATUS_ALERT_BIT
    assert bus.value(11, hw.TORQUE_ENABLE) == 0
    assert bus.write(11, hw.TORQUE_ENABLE, 1) == hw.STATUS_ALERT_BIT  # refused: shut down
    assert bus.value(11, hw.TORQUE_ENABLE) == 0
    assert bus.ph.reboot(bus.port, 11) == (dxl.COMM_SUCCESS, hw.STATUS_ALERT_BIT)
    assert bus.ping(11) == dxl.COMM_RX_TIMEOUT  # still booting
    time.sleep(REBOOT_S)
    assert bus.read(11, hw.HARDWARE_ERROR_STATUS) == (0, 0)
    assert bus.write(11, hw.TORQUE_ENABLE, 1) == 0 and bus.value(11, hw.TORQUE_ENABLE) == 1


# -- the physics behind the motors ---------------------------------------------------------------
def test_goal_positions_move_the_claw_in_real_time(bus):
    targets = task.RESET_POSE + [0.3, 0.35, -0.35] * 3
    bus.sync_write(hw.TORQUE_ENABLE, dict.fromkeys(hw.CLAW_IDS, 1))
    goals = {m: ticks(m, a) for m, a in zip(hw.CLAW_IDS, targets, strict=True)}
    bus.sync_write(hw.GOAL_POSITION, goals)
    start, trace = time.monotonic(), []
    while time.monotonic() - start < 0.8:
        trace.append((time.monotonic() - start, bulk_read(bus)))
        time.sleep(0.02)

    def error(sample, motor, j):
        return abs(angle(motor, sample[motor][2]) - targets[j])

    first, last = trace[0][1], trace[-1][1]
    assert max(error(first, m, j) for j, m in enumerate(hw.CLAW_IDS)) > 0.25
    assert max(error(last, m, j) for j, m in enumerate(hw.CLAW_IDS)) < 3 * DEG
    early = next(sample for t, sample in trace if t > 0.1)
    assert all(error(early, m, j) < error(first, m, j) for j, m in enumerate(hw.CLAW_IDS))
    assert max(abs(s[11][1]) for _, s in trace) * hw.VELOCITY_UNIT > 1.0  # rad/s on the way


def test_bus_watchdog_stops_a_motor_and_refuses_goals_until_cleared(bus):
    motor, start = 11, bus.value(11, hw.PRESENT_POSITION)
    bus.write(motor, hw.BUS_WATCHDOG, 5)  # 100 ms
    bus.write(motor, hw.TORQUE_ENABLE, 1)
    goal = ticks(motor, angle(motor, start) + 1.0)
    bus.write(motor, hw.GOAL_POSITION, goal)
    time.sleep(0.5)  # not a word to motor 11
    assert bus.value(motor, hw.BUS_WATCHDOG) == 0xFF  # -1: the watchdog fired
    held = bus.value(motor, hw.PRESENT_POSITION)
    assert abs(held - goal) > 10 * DEG / hw.POSITION_UNIT  # stopped on the way
    assert abs(bus.value(motor, hw.GOAL_POSITION) - held) < 2 * DEG / hw.POSITION_UNIT
    assert bus.write(motor, hw.GOAL_POSITION, goal) == ErrorCode.DATA_RANGE
    assert bus.write(motor, hw.BUS_WATCHDOG, 5) == ErrorCode.DATA_RANGE
    assert bus.write(motor, hw.BUS_WATCHDOG, 0) == 0
    assert bus.write(motor, hw.GOAL_POSITION, goal) == 0


def test_valve_motor_turns_the_valve_with_torque_and_leaves_it_free_without(bus, emulator):
    valve = hw.VALVE_ID
    bus.sync_write(hw.TORQUE_ENABLE, dict.fromkeys(hw.CLAW_IDS, 1))  # the claw held clear
    bus.sync_write(hw.GOAL_POSITION, {m: ticks(m, a) for m, a in zip(hw.CLAW_IDS,
                                                                     task.RESET_POSE, strict=True)})
    bus.write(valve, hw.TORQUE_ENABLE, 1)
    bus.write(valve, hw.GOAL_POSITION, ticks(valve, 1.0))
    time.sleep(1.0)
    assert abs(angle(valve, bus.value(valve, hw.PRESENT_POSITION)) - 1.0) < 3 * DEG
    bus.write(valve, hw.TORQUE_ENABLE, 0)
    bus.write(valve, hw.GOAL_POSITION, ticks(valve, 0.0))  # not driven while off
    time.sleep(0.5)
    assert abs(angle(valve, bus.value(valve, hw.PRESENT_POSITION)) - 1.0) < 3 * DEG
    assert bus.value(valve, hw.PRESENT_CURRENT) == 0
    state = json.loads(emulator.command("status")[0])
    assert state["valve_angle"] == pytest.approx(1.0, abs=3 * DEG)
    assert state["motors"]["50"]["torque"] == 0


# -- faults injected at run time -------------------------------------------------------------------
def test_drop_and_corrupt_faults(bus, emulator):
    emulator.command("fault drop 1")
    assert bus.ping(10) == dxl.COMM_RX_TIMEOUT
    emulator.command("fault drop 0.5")
    lost = sum(bus.ping(10) == dxl.COMM_RX_TIMEOUT for _ in range(30))
    assert 5 <= lost <= 25
    emulator.command("clear")
    emulator.command("fault corrupt 1")
    assert bus.ping(10) == dxl.COMM_RX_CORRUPT
    emulator.command("clear")
    assert bus.answers(10)


def test_hw_error_and_overheat_faults(bus, emulator):
    bus.sync_write(hw.TORQUE_ENABLE, {12: 1, 21: 1})
    emulator.command("fault hw_error 12 4")
    assert bus.read(12, hw.HARDWARE_ERROR_STATUS) == (1 << 4, hw.STATUS_ALERT_BIT)
    assert emulator.command("fault overheat 21") == ["ok fault overheat 21"]
    temperature, error = bus.read(21, hw.PRESENT_TEMPERATURE)
    assert temperature > bus.value(21, hw.TEMPERATURE_LIMIT) and error & hw.STATUS_ALERT_BIT
    assert bus.value(21, hw.HARDWARE_ERROR_STATUS) == 1 << 2
    assert bus.value(21, hw.TORQUE_ENABLE) == 0 and bus.value(12, hw.TORQUE_ENABLE) == 0
    assert bus.read(20, hw.HARDWARE_ERROR_STATUS) == (0, 0)


def test_stuck_and_current_faults(bus, emulator):
    motor = 31
    bus.write(motor, hw.TORQUE_ENABLE, 1)
    start = bus.value(motor, hw.PRESENT_POSITION)
    emulator.command(f"fault stuck {motor}")
    bus.write(motor, hw.GOAL_POSITION, ticks(motor, angle(motor, start) + 0.6))
    time.sleep(0.4)
    current, _, position = bulk_read(bus)[motor]
    assert abs(position - start) <= 2
    assert current * 2.69 > 1500  # mA, pushing against the jam
    emulator.command("fault current 12 1500")
    assert bus.value(12, hw.PRESENT_CURRENT) == round(1500 / 2.69)
    emulator.command("clear")
    time.sleep(0.4)
    assert abs(bulk_read(bus)[motor][2] - start) > 0.4 / hw.POSITION_UNIT  # free again


def test_silent_and_delay_faults(bus, emulator):
    emulator.command("fault silent 50")
    assert bus.ping(50) == dxl.COMM_RX_TIMEOUT
    assert bus.answers(10)
    reader = dxl.GroupBulkRead(bus.port, bus.ph)
    for motor in MOTORS:
        reader.addParam(motor, *hw.PRESENT_CUR_VEL_POS)
    assert reader.txRxPacket() == dxl.COMM_RX_TIMEOUT
    emulator.command("clear")
    emulator.command("fault delay 20")
    start = time.perf_counter()
    assert bus.answers(10)
    assert time.perf_counter() - start > 0.02
    emulator.command("clear")
    assert bus.answers(50)


def test_console_rejects_bad_commands_and_keeps_serving(bus, emulator):
    for line in ("bogus", "fault stuck 99", "fault drop 2", "fault hw_error 10 melted"):
        (reply,) = emulator.command(line)
        assert reply.startswith("error: "), reply
    assert bus.answers(10)


# -- in-process: the instruction handlers without a pty -------------------------------------------
def exchange(emulator: BusEmulator, motor: int, instruction: int, params: bytes = b"") -> list:
    """(motor id, error byte, params) of each status packet answering one instruction."""
    (packet,) = PacketParser().feed(build_packet(motor, instruction, params))
    replies = emulator.handle(packet, time.monotonic())
    return [(data[4], data[8], data[9:-2]) for _, data in replies]


def test_rewritten_id_baud_and_status_return_level():
    emu = BusEmulator()
    write = Instruction.WRITE
    assert exchange(emu, 10, write, struct.pack("<HB", 7, 15)) == [(10, 0, b"")]  # ID 10 -> 15
    assert exchange(emu, 10, Instruction.PING) == []
    assert exchange(emu, 15, Instruction.PING) == [(15, 0, struct.pack("<HB", 1030, 46))]
    assert exchange(emu, 11, write, struct.pack("<HB", 68, 1)) == []  # level 1: reads only
    assert exchange(emu, 11, write, struct.pack("<HB", 65, 1)) == []  # no status for writes
    assert exchange(emu, 11, Instruction.READ, struct.pack("<HH", 65, 1)) == [(11, 0, b"\x01")]
    assert exchange(emu, 12, write, struct.pack("<HB", 8, 1)) == [(12, 0, b"")]  # 57600 baud
    assert exchange(emu, 12, Instruction.PING) == []  # it no longer hears the bus
    pings = exchange(emu, BROADCAST_ID, Instruction.PING)
    assert [p[0] for p in pings] == sorted({*MOTORS, 15} - {10, 12})


def test_fast_bulk_read_and_unknown_instructions():
    emu = BusEmulator()
    params = struct.pack("<BHHBHH", 10, 0, 2, 50, 132, 4)
    (packet,) = PacketParser().feed(build_packet(BROADCAST_ID, Instruction.FAST_BULK_READ, params))
    ((_, data),) = emu.handle(packet, time.monotonic())
    assert data[4] == BROADCAST_ID and data[8:12] == bytes([0, 10, 0x06, 0x04])  # model 1030
    assert data[14:16] == bytes([0, 50]) and struct.unpack_from("<i", data, 16)[0] == 2048
    assert exchange(emu, 10, Instruction.FACTORY_RESET, b"\xff") == [(10, ErrorCode.INSTRUCTION,
                                                                      b"")]
    assert exchange(emu, 10, Instruction.ACTION) == [(10, ErrorCode.INSTRUCTION, b"")]


# -- the command line ------------------------------------------------------------------------------
def test_start_options_and_clean_exit(dclaw_cmd):
    with EmulatorProcess("--guide", "--fault", "silent 50", "--return-delay", "250",
                         command=dclaw_cmd) as emu:
        port = dxl.PortHandler(emu.port)
        assert port.openPort()
        ph = dxl.PacketHandler(2.0)
        assert ph.ping(port, hw.GUIDE_ID)[1] == dxl.COMM_SUCCESS
        assert ph.ping(port, hw.VALVE_ID)[1] == dxl.COMM_RX_TIMEOUT
        assert ph.read1ByteTxRx(port, 10, hw.RETURN_DELAY_TIME[0])[0] == 250
        port.closePort()
        assert emu.close() == 0  # SIGTERM: a clean exit


def test_quit_on_stdin_exits_cleanly(dclaw_cmd):
    with EmulatorProcess(command=dclaw_cmd) as emu:
        assert emu.command("quit") == ["ok quit"]
        assert emu.wait() == 0


@pytest.mark.parametrize("args", [["--fault", "melt 10"], ["--baud", "12345"], ["--model", "7"]])
def test_bad_options_are_refused(dclaw_cmd, args):
    with pytest.raises(RuntimeError, match="did not start"):
        EmulatorProcess(*args, command=dclaw_cmd)


def test_the_emulator_can_serve_at_realtime_priority(dclaw_cmd):
    with EmulatorProcess("--realtime-priority", "20", command=dclaw_cmd) as emu:
        assert os.sched_getscheduler(emu.pid) == os.SCHED_FIFO  # root here and in CI
        assert os.sched_getparam(emu.pid).sched_priority == 20
        assert emu.command("status")[0].startswith("{")
        assert "real-time priority 20" in emu.stderr()
