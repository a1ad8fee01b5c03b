"""The D'Claw on Dynamixel X-series servos over Protocol 2.0, through the ROBOTIS dynamixel-sdk.

Per tick: one bulk read of address 126, 10 bytes (current, velocity, position) of the nine claw
motors and the valve motor 50 (for one motor in turn 21 bytes, through its temperature at 146),
and one sync write of the claw's goal positions (116). A status packet's alert bit (a latched
hardware error) is checked on every reply, and address 70 is read to name the error.

The replies are read with the SDK's own `readRx` rather than `GroupBulkRead`, because the group
object drops each reply's error byte, which carries the alert. The two per-tick instruction
packets are framed by `dclaw.protocol2` (shared with the bus emulator) and written through the
SDK's port: the SDK's builders copy lists into a fresh 1 KiB buffer per packet (and drop their
own byte stuffing when it lengthens a packet), and the ten Bulk Read packets never change, so
they are built once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import dynamixel_sdk as dxl
import numpy as np

from dclaw import hardware as hw
from dclaw import task
from dclaw.protocol2 import BROADCAST_ID, build_packet
from robot.backend import ResetFailed, RobotState, SafetyStop
from robot.safety import SafetyLimits, SafetyMonitor

log = logging.getLogger(__name__)

# ROBEL dclaw/scripted_reset.py
MINIMUM_CLAW_RESET_TIME = 1.0  # s before the claw is fully engaged
GOOD_ERROR_TOL = math.radians(5.0)
MAX_RESET_RETRIES = 3
DISENTANGLE_INTERVAL_TIME = 0.75
# ROBEL lifts the top joints to pi/4 to disentangle; clipped here to the joint range (0.48 rad).
TOP_DISENTANGLE_POS = min(math.pi / 4, float(task.JOINT_HIGH[0]))

RESET_RATE_HZ = 20.0  # goal updates per second during scripted moves
VALVE_RESET_SPEED = math.pi / 2  # rad/s of the valve motor while it turns the valve back
VALVE_RESET_TIMEOUT_S = 10.0  # ROBEL: timeout=10 for the object reset
CLAW_SETTLE_TIMEOUT_S = 3.0
TEMPERATURE_EVERY = 10  # fast-sync: ticks between temperature reads (1 s at 10 Hz)
# Bulk Read: 126 (current) to 146 (temperature) for the motor whose temperature is read.
TEMP_RANGE = hw.PRESENT_TEMPERATURE[0] + 1 - hw.PRESENT_CUR_VEL_POS[0]
TX_RETRIES = 3


def _le(value: int, size: int) -> list[int]:
    return list(hw.to_unsigned(value, size).to_bytes(size, "little"))


class DynamixelBackend:
    """The D'Claw's nine claw servos and valve servo on one U2D2 (or the bus emulator)."""

    name = "dynamixel"

    def __init__(self, device: str = "/dev/ttyUSB0", baud: int = 1_000_000,
                 calibration: dict[int, hw.MotorCalibration] | None = None,
                 limits: SafetyLimits | None = None, reboot_on_error: bool = False,
                 bus_read: str = "bulk", read_block_s: float = 0.002):
        self.device, self.baud = device, baud
        self.calibration = calibration or hw.load_calibration(None)
        self.limits = limits or SafetyLimits()
        self.monitor = SafetyMonitor(self.limits)
        self.reboot_on_error = reboot_on_error
        self.claw_ids = list(hw.CLAW_IDS)
        self.ids = [*self.claw_ids, hw.VALVE_ID]
        self._id_set = set(self.ids)
        if bus_read not in ("bulk", "fast-sync"):
            raise ValueError(f"bus_read must be bulk or fast-sync, not {bus_read!r}")
        # bulk: DESIGN.md's Bulk Read, one status packet per motor (2.7 ms of wire at 1 Mbps);
        # fast-sync: Fast Sync Read, one status packet for all (1.7 ms).
        self.bus_read = bus_read
        self.read_block_s = read_block_s  # 0: the SDK's own busy polling
        self.current_unit: dict[int, float] = {}
        self.models: dict[int, str] = {}
        self._port: Any = None
        self._ph: Any = None
        self._bulk_packets: list[tuple[bytes, int]] = []  # (instruction, reply bytes to expect)
        self._last: RobotState | None = None
        self._reads = 0
        # Set by the runner: returns why to abort (a signal), or None. Checked during resets.
        self.abort_requested: Callable[[], str | None] | None = None

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> None:
        port = dxl.PortHandler(self.device)
        try:
            opened = port.openPort() and port.setBaudRate(self.baud)
        except Exception as exc:  # pyserial raises SerialException (an OSError) with the cause
            raise ConnectionError(
                f"cannot open {self.device}: {exc}. Is the U2D2 plugged in, and is your user in "
                "the `dialout` group (or is the udev rule from the README installed)?") from exc
        if not opened:
            raise ConnectionError(f"cannot open {self.device} at {self.baud} baud")
        # The SDK polls the port with a zero timeout: a spinning core. A short blocking timeout
        # lets each read wait in select() for exactly the bytes the SDK asks for, leaving the CPU
        # to everything else (and on a 2-core PC, to the bus emulator); the SDK's own packet
        # timeout still bounds the wait.
        if self.read_block_s and getattr(port, "ser", None) is not None:
            port.ser.timeout = self.read_block_s
        self._port, self._ph = port, dxl.PacketHandler(2.0)

        missing = []
        for motor in self.ids:
            model, result, _ = self._ph.ping(port, motor)
            if result != dxl.COMM_SUCCESS:
                missing.append(motor)
                continue
            self.current_unit[motor] = hw.current_unit_ma(model)
            self.models[motor] = hw.MODELS[model][0]
        if missing:
            raise ConnectionError(
                f"motor(s) {missing} on {self.device} do not answer at {self.baud} baud: check "
                "power (12 V), the daisy chain, and that their IDs and baud rate are set "
                "(Dynamixel Wizard)")

        self._set_torque(self.ids, False)
        errors = {m: self._read(m, hw.HARDWARE_ERROR_STATUS) for m in self.ids}
        errors = {m: e for m, e in errors.items() if e}
        if errors and self.reboot_on_error:
            for motor in errors:
                log.warning("rebooting motor %d (hardware error: %s)", motor,
                            hw.hardware_error_text(errors[motor]))
                self._ph.reboot(self._port, motor)
            time.sleep(0.5)
            errors = {m: self._read(m, hw.HARDWARE_ERROR_STATUS) for m in errors}
            errors = {m: e for m, e in errors.items() if e}
        if errors:
            listed = "; ".join(f"motor {m}: {hw.hardware_error_text(e)}"
                               for m, e in errors.items())
            raise ConnectionError(f"hardware error latched ({listed}): find the cause, then "
                                  "power-cycle the motors or start with --reboot")
        for motor in self.ids:
            # EEPROM (torque is off): written only when different, to spare the flash.
            if self._read(motor, hw.OPERATING_MODE) != 3:
                log.warning("motor %d: setting position control mode (3)", motor)
                self._write(motor, hw.OPERATING_MODE, 3)
            if self._read(motor, hw.RETURN_DELAY_TIME) != 0:
                log.warning("motor %d: setting return delay time to 0", motor)
                self._write(motor, hw.RETURN_DELAY_TIME, 0)
            # A watchdog that fired reads 0xFF and must be cleared before it is set again.
            self._write(motor, hw.BUS_WATCHDOG, 0)
            units = max(1, min(127, round(self.limits.watchdog_s / hw.BUS_WATCHDOG_UNIT_S)))
            self._write(motor, hw.BUS_WATCHDOG, units)

        address, length = hw.PRESENT_CUR_VEL_POS
        # Bulk Read gives each motor its own range: in turn, one motor's range runs on to its
        # Present Temperature (146), 11 bytes more, so every motor's temperature is read once
        # a second (10 motors, 10 Hz) at a tenth of the cost of a separate read.
        params = [
            bytes(b for m in self.ids for b in (m, *_le(address, 2),
                                                *_le(length if m != hot else TEMP_RANGE, 2)))
            for hot in self.ids]
        # With the reply bytes the SDK's bulkReadTx sets its packet timeout from.
        self._bulk_packets = [
            (build_packet(BROADCAST_ID, dxl.INST_BULK_READ, param),
             sum(param[i + 3] + 10 for i in range(0, len(param), 5))) for param in params]
        self._last = self._bulk_read()
        if not self._last.ok:
            raise ConnectionError(f"the first bulk read on {self.device} failed")

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "baud": self.baud,
                "bus_read": self.bus_read, "models": sorted(set(self.models.values()))}

    # -- low-level I/O -----------------------------------------------------------------------
    def _read(self, motor: int, field: tuple[int, int]) -> int:
        address, size = field
        reader = {1: self._ph.read1ByteTxRx, 2: self._ph.read2ByteTxRx,
                  4: self._ph.read4ByteTxRx}[size]
        for _ in range(TX_RETRIES):
            value, result, _ = reader(self._port, motor, address)
            if result == dxl.COMM_SUCCESS:
                return value
        raise SafetyStop("bus", f"motor {motor}: reading address {address} failed "
                                f"{TX_RETRIES} times", motor=motor)

    def _write(self, motor: int, field: tuple[int, int], value: int) -> None:
        address, size = field
        for _ in range(TX_RETRIES):
            result, error = self._ph.writeTxRx(self._port, motor, address, size, _le(value, size))
            if result == dxl.COMM_SUCCESS and not (error & ~hw.STATUS_ALERT_BIT):
                return
        raise SafetyStop("bus", f"motor {motor}: writing {value} at address {address} failed "
                                f"({self._ph.getTxRxResult(result)}, error {error})", motor=motor)

    def _send(self, packet: bytes) -> int:
        """What the SDK's txPacket does with a finished packet: claim the port, flush, write."""
        port = self._port
        if port.is_using:
            return dxl.COMM_PORT_BUSY
        port.is_using = True
        port.clearPort()
        if port.writePort(packet) != len(packet):
            port.is_using = False
            return dxl.COMM_TX_FAIL
        return dxl.COMM_SUCCESS

    def _set_torque(self, motors: Iterable[int], on: bool) -> None:
        for motor in motors:
            self._write(motor, hw.TORQUE_ENABLE, int(on))

    def _write_goals(self, goals: dict[int, float]) -> None:
        """One sync write of goal positions (rad, calibrated) for the given motors."""
        address, size = hw.GOAL_POSITION
        cal = self.calibration
        params = struct.pack("<HH", address, size) + b"".join(
            struct.pack("<BI", m, hw.to_unsigned(cal[m].angle_to_ticks(a), size))
            for m, a in goals.items())
        result = self._send(build_packet(BROADCAST_ID, dxl.INST_SYNC_WRITE, params))
        self._port.is_using = False  # a broadcast write has no status packet
        if result != dxl.COMM_SUCCESS:
            raise SafetyStop("bus", f"goal write failed: {self._ph.getTxRxResult(result)}")

    def _read_all(self) -> tuple[int, dict[int, tuple[int, int, int]], list[int],
                                 dict[int, float]]:
        """(result, motor → (current, velocity, position) units, motors with the alert bit,
        motor → °C for the motor whose temperature this Bulk Read carried)."""
        port, ph = self._port, self._ph
        address, length = hw.PRESENT_CUR_VEL_POS
        values: dict[int, tuple[int, int, int]] = {}
        alerts, temperature = [], {}
        if self.bus_read == "fast-sync":
            # One instruction, one status packet: per motor error, id, 10 data bytes, crc.
            result = ph.syncReadTx(port, address, length, self.ids, len(self.ids), True)
            if result == dxl.COMM_SUCCESS:
                raw, result, _ = ph.fastSyncReadRx(port, dxl.BROADCAST_ID,
                                                   (length + 4) * len(self.ids))
                raw = bytes(raw)
                for i in range(len(self.ids) if result == dxl.COMM_SUCCESS else 0):
                    segment = raw[i * (length + 4): (i + 1) * (length + 4)]
                    if len(segment) < length + 2 or segment[1] not in self._id_set:
                        result = dxl.COMM_RX_CORRUPT
                        break
                    values[segment[1]] = struct.unpack("<hii", segment[2: 2 + length])
                    if segment[0] & hw.STATUS_ALERT_BIT:
                        alerts.append(segment[1])
            return result, values, alerts, temperature
        hot = self.ids[self._reads % len(self.ids)]
        packet, reply_bytes = self._bulk_packets[self._reads % len(self.ids)]
        result = self._send(packet)  # as the SDK's bulkReadTx, with the packet built once
        if result == dxl.COMM_SUCCESS:
            port.setPacketTimeout(reply_bytes)
            for motor in self.ids:
                size = TEMP_RANGE if motor == hot else length
                data, result, error = ph.readRx(port, motor, size)
                if result != dxl.COMM_SUCCESS or len(data) != size:
                    break
                values[motor] = struct.unpack("<hii", bytes(data[:length]))
                if motor == hot:
                    temperature[motor] = float(data[-1])
                if error & hw.STATUS_ALERT_BIT:
                    alerts.append(motor)
        return result, values, alerts, temperature

    def _bulk_read(self) -> RobotState:
        """One read of current, velocity and position of every motor."""
        now = time.monotonic()
        result, values, alerts, temperature = self._read_all()
        ph = self._ph
        if result != dxl.COMM_SUCCESS or len(values) != len(self.ids):
            log.debug("bulk read failed: %s", ph.getTxRxResult(result))
            last = self._last
            return RobotState(last.qpos, last.qvel, last.valve, now, ok=False) if last else \
                RobotState(np.zeros(9), np.zeros(9), 0.0, now, ok=False)
        if alerts:
            motor = alerts[0]
            try:
                status = self._read(motor, hw.HARDWARE_ERROR_STATUS)
            except SafetyStop:
                status = 0
            raise SafetyStop("hardware_error", f"motor {motor}: hardware error "
                             f"({hw.hardware_error_text(status)}); the motor turned its torque off",
                             motor=motor, status=status)
        cal = self.calibration
        qpos = np.array([cal[m].ticks_to_angle(values[m][2]) for m in self.claw_ids])
        qvel = np.array([cal[m].velocity_to_rad_s(values[m][1]) for m in self.claw_ids])
        valve = cal[hw.VALVE_ID].ticks_to_angle(values[hw.VALVE_ID][2])
        current = {m: values[m][0] * self.current_unit[m] for m in self.ids}
        return RobotState(qpos, qvel, valve, now, current_ma=current, temperature_c=temperature)

    def _temperatures(self) -> dict[int, float]:
        address, size = hw.PRESENT_TEMPERATURE
        reader = dxl.GroupSyncRead(self._port, self._ph, address, size)
        for motor in self.ids:
            reader.addParam(motor)
        if reader.txRxPacket() != dxl.COMM_SUCCESS:
            return {}
        return {m: float(reader.getData(m, address, size)) for m in self.ids
                if reader.isAvailable(m, address, size)}

    # -- the Backend protocol ----------------------------------------------------------------
    def read(self) -> RobotState:
        state = self._bulk_read()
        self._reads += 1
        if state.ok and self.bus_read == "fast-sync" and self._reads % TEMPERATURE_EVERY == 0:
            state.temperature_c = self._temperatures()
        self.monitor.check(state)
        if state.ok:
            self._last = state
        return state

    def write(self, targets: np.ndarray) -> None:
        # Enforced here too, whoever the caller: joint ranges and the per-step speed bound.
        targets = task.bound_joint_targets(np.asarray(targets, dtype=np.float64),
                                           self._last.qpos)
        self._write_goals(dict(zip(self.claw_ids, targets.tolist(), strict=True)))

    def keepalive(self) -> None:
        self.read()

    def _check_abort(self) -> None:
        if self.abort_requested is not None and (why := self.abort_requested()):
            raise SafetyStop("signal", f"{why} during the reset")

    def _pause(self, seconds: float) -> None:
        """Waits while reading at RESET_RATE_HZ (safety checks and the watchdog go on)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._check_abort()
            self.read()
            time.sleep(min(left, 1.0 / RESET_RATE_HZ))

    def _move(self, goals: dict[int, float], speed: float, timeout: float,
              tolerance: float = GOOD_ERROR_TOL) -> list[int]:
        """Moves motors to goals at a bounded speed (rad/s); returns the motors not there."""
        step = speed / RESET_RATE_HZ
        start = time.monotonic()
        state = self.read()
        commanded = {m: self._position(state, m) for m in goals}
        while True:
            for motor, goal in goals.items():
                commanded[motor] += float(np.clip(goal - commanded[motor], -step, step))
            self._write_goals(commanded)
            time.sleep(1.0 / RESET_RATE_HZ)
            self._check_abort()
            state = self.read()
            off = [m for m, g in goals.items() if abs(self._position(state, m) - g) > tolerance]
            reached = all(abs(commanded[m] - g) < 1e-9 for m, g in goals.items())
            if (reached and not off) or time.monotonic() - start > timeout:
                return off

    def _position(self, state: RobotState, motor: int) -> float:
        if motor == hw.VALVE_ID:
            return state.valve
        return float(state.qpos[self.claw_ids.index(motor)])

    def reset(self) -> RobotState:
        """ROBEL's scripted reset for the turn tasks (dclaw/scripted_reset.py), without input().

        Top and bottom joints limp, middle joints to their reset angle (the claw moves clear);
        the valve motor turns the valve back to 0; after at least 1 s the whole claw goes to the
        reset pose; every joint is checked within 5 degrees, with up to 3 disentangle-and-retry
        rounds; the valve motor is released for the episode.
        """
        pose = dict(zip(self.claw_ids, task.RESET_POSE.tolist(), strict=True))
        started = time.monotonic()
        self._set_torque(hw.TOP_IDS + hw.BOTTOM_IDS, False)
        self._set_torque(hw.MIDDLE_IDS, True)
        self._move({m: pose[m] for m in hw.MIDDLE_IDS}, task.MAX_JOINT_SPEED,
                   CLAW_SETTLE_TIMEOUT_S)
        valve = self.read().valve
        self._set_torque([hw.VALVE_ID], True)
        off = self._move({hw.VALVE_ID: valve - float(task.wrap_angle(valve))}, VALVE_RESET_SPEED,
                         VALVE_RESET_TIMEOUT_S)
        if off:
            log.warning("the valve did not return to 0 within %.0f s", VALVE_RESET_TIMEOUT_S)
        self._pause(max(0.0, MINIMUM_CLAW_RESET_TIME - (time.monotonic() - started)))

        bad: list[int] = []
        for attempt in range(MAX_RESET_RETRIES + 1):
            if attempt:
                log.warning("reset attempt %d: motors %s more than 5° off; disentangling",
                            attempt, bad)
                self._disentangle(pose)
            self._set_torque(self.claw_ids, True)
            bad = self._move(pose, task.MAX_JOINT_SPEED, CLAW_SETTLE_TIMEOUT_S)
            if not bad:
                break
        else:
            self.stop("reset failed")
            raise ResetFailed("reset", f"motors {bad} are still more than 5° from the reset pose "
                              f"after {MAX_RESET_RETRIES} disentangle attempts: free them by hand "
                              "and start the runner again", motors=bad)
        self._set_torque([hw.VALVE_ID], False)  # ROBEL: the episode starts with the valve free
        return self.read()

    def _disentangle(self, pose: dict[int, float]) -> None:
        """ROBEL's disentangle_dclaw: rest, lift the top joints, then middle, then bottom."""
        self._set_torque(self.claw_ids, False)
        self._pause(DISENTANGLE_INTERVAL_TIME)
        self._set_torque(hw.TOP_IDS, True)
        self._write_goals({m: TOP_DISENTANGLE_POS for m in hw.TOP_IDS})
        self._pause(DISENTANGLE_INTERVAL_TIME)
        for group in (hw.MIDDLE_IDS, hw.BOTTOM_IDS):
            self._set_torque(group, True)
            self._write_goals({m: pose[m] for m in group})
            self._pause(DISENTANGLE_INTERVAL_TIME)

    def stop(self, reason: str) -> None:
        """Hold where the claw is, then torque off every motor. Best effort, never raises."""
        if self._port is None:
            return
        log.warning("stopping the robot: %s", reason)
        self._port.is_using = False  # a stop may follow an exception raised mid-packet
        try:
            if self._last is not None:
                self._write_goals(dict(zip(self.claw_ids, self._last.qpos.tolist(), strict=True)))
            time.sleep(self.limits.hold_s)
        except Exception as exc:
            log.error("hold failed (%s); turning the torque off now", exc)
        self.torque_off(self.ids)

    def torque_off(self, motors: Sequence[int]) -> None:
        """Per motor, acknowledged, with a sync write as the fallback. Never raises."""
        failed = []
        for motor in motors:
            try:
                self._set_torque([motor], False)
            except Exception:
                failed.append(motor)
        if failed:
            try:
                writer = dxl.GroupSyncWrite(self._port, self._ph, *hw.TORQUE_ENABLE)
                for motor in failed:
                    writer.addParam(motor, [0])
                writer.txPacket()
            except Exception as exc:
                log.error("torque off of motors %s failed: %s (the bus watchdog stops them)",
                          failed, exc)

    def close(self) -> None:
        if self._port is None:
            return
        self.torque_off(self.ids)
        with contextlib.suppress(Exception):
            self._port.closePort()
        self._port = None


def open_backend(device: str, baud: int, calibration_path: Path | None,
                 limits: SafetyLimits, reboot: bool, bus_read: str = "bulk") -> DynamixelBackend:
    return DynamixelBackend(device, baud, hw.load_calibration(calibration_path), limits, reboot,
                            bus_read)
