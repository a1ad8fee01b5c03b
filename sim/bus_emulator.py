"""A Dynamixel Protocol 2.0 bus on a pseudo-terminal whose motors are the MuJoCo D'Claw's joints.

`dclaw emulate` opens a pty, prints `port: /dev/pts/N` and serves it: connect with dynamixel-sdk
(`PortHandler(path)`, `PacketHandler(2.0)`, any baud) as to a U2D2. Run it in its own process:
the SDK busy-waits, so an emulator in a thread of the client's process would starve.

The bus: motors 10, 11, 12, 20, 21, 22, 30, 31, 32 (the claw), 50 (the valve) and, with --guide,
60, each an X-series servo (`sim.servo`) answering Ping, Read, Write, Reg Write, Action, Reboot,
Sync Read/Write, Bulk Read/Write and Fast Sync/Bulk Read, with broadcast (0xFE) where the protocol
has it (a broadcast Ping is answered by every motor in ID order; broadcast writes get no status).
A packet with a bad CRC gets a status with error 3 (CRC) from the motor it names, as an X-series
servo does; garbage is skipped up to the next header.

Real time: the physics is stepped so that simulated time follows time.monotonic(), in batches of a
few steps from the serving loop, and up to date before every packet is handled; after a stall of
more than MAX_CATCH_UP_S the simulation drops the lost time instead of racing to catch up.
Wire time: every reply is written when its last byte would have arrived on a real bus at --baud
(10 bits a byte): the instruction's own bytes, then per reply the motor's Return Delay Time
(2 us units) and its bytes, counted from when the instruction reached the pty (not from when this
process got round to it); the last SPIN_S before each reply are spun rather than slept, as a
sleep wakes ~0.1 ms late. A Reboot keeps the motor silent for REBOOT_S afterwards.

Present Current is the joint's actuator torque (N·m, MuJoCo's units) divided by the model's
torque constant (stall torque / stall current, e.g. XM430-W210: 3.0 N·m / 2.3 A = 1.30 N·m/A),
in the model's current unit (2.69 mA; 1.34 mA for XH430-V), clamped to Current Limit (38).
Faults are injected with `sim.fault_commands` (stdin lines or --fault).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import signal
import struct
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dclaw import hardware as hw
from dclaw.protocol2 import (
    BROADCAST_ID,
    CorruptPacket,
    ErrorCode,
    Instruction,
    Packet,
    PacketParser,
    fast_status_packet,
    status_packet,
)
from sim.emulated_claw import EmulatedClaw
from sim.servo import BAUD_CODES, MODEL_SPECS, Servo

log = logging.getLogger(__name__)

BITS_PER_BYTE = 10  # start + 8 data + stop
STEP_BATCH = 4  # physics steps per wake-up of an idle loop (10 ms)
MAX_CATCH_UP_S = 0.1
PARTIAL_PACKET_TIMEOUT_S = 0.1  # a partial packet whose rest does not come is given up
REBOOT_S = 0.1
SPIN_S = 0.0002  # at 10 Hz and ten replies a tick: at most 2 ms of CPU a second
Reply = tuple[Servo, bytes]


@dataclass(frozen=True)
class EmulatorConfig:
    baud: int = 1_000_000
    model_number: int = hw.DEFAULT_MODEL_NUMBER
    calibration: Path | None = None
    guide: bool = False
    seed: int = 0
    return_delay: int = 0  # Return Delay Time (9) at start, 2 us units (factory: 250)


@dataclass
class BusFaults:
    drop: float = 0.0
    corrupt: float = 0.0
    delay_s: float = 0.0


@dataclass
class _Timing:
    origin: float = 0.0  # monotonic time of simulated time 0
    steps: int = 0
    bus_free_at: float = 0.0  # the end of the last reply on the wire
    last_sense: float = 0.0
    torque_applied: dict[int, bool] = field(default_factory=dict)


class BusEmulator:
    """The motors, the physics behind them, and the instruction handlers (no I/O)."""

    def __init__(self, config: EmulatorConfig = EmulatorConfig()):
        if config.baud not in BAUD_CODES:
            raise ValueError(f"baud {config.baud} is not a Dynamixel rate: {sorted(BAUD_CODES)}")
        if config.model_number not in MODEL_SPECS:
            hw.current_unit_ma(config.model_number)  # raises, naming the known models
        self.config = config
        self.calibration = hw.load_calibration(config.calibration)
        self.claw = EmulatedClaw(self.calibration, guide=config.guide)
        self.baud_code = BAUD_CODES[config.baud]
        self.byte_time = BITS_PER_BYTE / config.baud
        self.faults = BusFaults()
        self.rng = random.Random(config.seed)
        self.servos = [Servo(m, config.model_number, self.baud_code, config.return_delay)
                       for m in self.claw.motor_ids]
        self._by_id: dict[int, Servo] = {}
        self._reindex()
        now = time.monotonic()
        self._t = _Timing(origin=now, bus_free_at=now, last_sense=now)
        for servo in self.servos:
            self._sense(servo, 0.0, now)
            servo.set(116, servo.present_ticks)
            servo.set(140, servo.present_ticks)
            self.apply(servo)
        self._handlers: dict[int, Callable[[Packet, float], list[Reply]]] = {
            Instruction.PING: self._ping, Instruction.READ: self._read,
            Instruction.WRITE: self._write, Instruction.REG_WRITE: self._reg_write,
            Instruction.ACTION: self._action, Instruction.REBOOT: self._reboot,
            Instruction.SYNC_READ: self._sync_read, Instruction.FAST_SYNC_READ: self._sync_read,
            Instruction.SYNC_WRITE: self._sync_write, Instruction.BULK_READ: self._bulk_read,
            Instruction.FAST_BULK_READ: self._bulk_read, Instruction.BULK_WRITE: self._bulk_write,
        }

    # -- motors ------------------------------------------------------------------------------
    def _reindex(self) -> None:
        self._by_id = {s.motor_id: s for s in sorted(self.servos, key=lambda s: s.motor_id)}

    def servo(self, motor_id: int) -> Servo:
        """The motor that answers to `motor_id` now; KeyError if none."""
        return self._by_id[motor_id]

    def _listening(self, servo: Servo, now: float) -> bool:
        return not servo.faults.silent and now >= servo.silent_until \
            and servo.table[8] == self.baud_code  # a motor moved to another baud hears noise

    def _hear(self, motor_id: int, now: float) -> Servo | None:
        servo = self._by_id.get(motor_id)
        if servo is None or not self._listening(servo, now):
            return None
        servo.last_heard = now
        return servo

    def _hear_all(self, now: float) -> list[Servo]:
        return [s for s in self._by_id.values() if self._hear(s.motor_id, now)]

    def apply(self, servo: Servo) -> None:
        """Carries a motor's torque and goal over to the physics."""
        motor = servo.joint
        self.claw.set_torque(motor, servo.torque_on)
        self.claw.set_goal(motor, self.calibration[motor].ticks_to_angle(servo.goal_ticks))
        self._t.torque_applied[motor] = servo.torque_on
        if servo.motor_id not in self._by_id or self._by_id[servo.motor_id] is not servo:
            self._reindex()

    def refresh(self, servo: Servo) -> None:
        """Re-reads a motor's present values now (after a fault changed it) and applies it."""
        self._sense(servo, 0.0, time.monotonic())
        self.apply(servo)

    # -- time --------------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Steps the physics up to `now` and updates the present values and the watchdogs."""
        t, dt = self._t, self.claw.dt
        due = int((now - t.origin) / dt) - t.steps
        if due <= 0:
            return
        if due * dt > MAX_CATCH_UP_S:  # a stall: drop the lost time
            skipped = due - round(MAX_CATCH_UP_S / dt)
            t.origin += skipped * dt
            due -= skipped
        self.claw.step(due)
        t.steps += due
        elapsed, t.last_sense = now - t.last_sense, now
        for servo in self.servos:
            self._sense(servo, elapsed, now)
            if servo.check_watchdog(now) or servo.torque_on != t.torque_applied[servo.joint]:
                self.apply(servo)

    @property
    def sim_time(self) -> float:
        return self._t.steps * self.claw.dt

    def next_step_due(self) -> float:
        return self._t.origin + (self._t.steps + STEP_BATCH) * self.claw.dt

    def _sense(self, servo: Servo, elapsed: float, now: float) -> None:
        cal = self.calibration[servo.joint]
        angle, velocity, torque = self.claw.reading(servo.joint)
        current_a = torque * cal.scale / servo.spec.torque_constant
        servo.sense(current_a, round(velocity / (cal.scale * hw.VELOCITY_UNIT)),
                    cal.angle_to_ticks(angle), servo.goal_ticks, elapsed, now)

    # -- instructions ------------------------------------------------------------------------
    def handle(self, packet: Packet | CorruptPacket, now: float) -> list[Reply]:
        """The replies to one instruction, in the order they go on the wire."""
        self.advance(now)
        if isinstance(packet, CorruptPacket):
            servo = self._by_id.get(packet.motor_id)
            if servo is None or not self._listening(servo, now) \
                    or packet.instruction == Instruction.STATUS:
                return []
            return self._status(servo, ErrorCode.CRC)
        if packet.instruction == Instruction.STATUS:
            return []  # another device's answer
        handler = self._handlers.get(packet.instruction)
        if handler is None:
            servo = self._hear(packet.motor_id, now)
            return self._status(servo, ErrorCode.INSTRUCTION) if servo else []
        return handler(packet, now)

    @staticmethod
    def _status(servo: Servo, error: int = ErrorCode.OK, data: bytes = b"", level: int = 2,
                motor_id: int | None = None) -> list[Reply]:
        """A status packet, if the motor's Status Return Level (68) answers at `level`."""
        if servo.table[68] < level:
            return []
        motor_id = servo.motor_id if motor_id is None else motor_id
        return [(servo, status_packet(motor_id, servo.error_byte(error), data))]

    def _write_servo(self, servo: Servo, address: int, data: bytes, now: float) -> int:
        error = servo.write(address, data, now)
        if not error:
            self.apply(servo)
        return error

    def _ping(self, packet: Packet, now: float) -> list[Reply]:
        """Model number and firmware version; to a broadcast, every motor in ID order."""
        return [r for s in self._targets(packet, now) for r in self._status(
            s, data=struct.pack("<HB", s.get(0), s.table[6]), level=0)]

    def _read(self, packet: Packet, now: float) -> list[Reply]:
        servo = self._hear(packet.motor_id, now)
        if servo is None:
            return []
        if len(packet.params) != 4:
            return self._status(servo, ErrorCode.DATA_LENGTH, level=1)
        address, length = struct.unpack("<HH", packet.params)
        error, data = servo.read(address, length)
        return self._status(servo, error, data, level=1)

    def _targets(self, packet: Packet, now: float) -> list[Servo]:
        if packet.motor_id == BROADCAST_ID:
            return self._hear_all(now)
        servo = self._hear(packet.motor_id, now)
        return [servo] if servo else []

    def _unicast_reply(self, packet: Packet, servo: Servo, error: int) -> list[Reply]:
        """The status to a unicast instruction, from the ID it was sent to (a write of ID too)."""
        if packet.motor_id == BROADCAST_ID:
            return []
        return self._status(servo, error, motor_id=packet.motor_id)

    def _write(self, packet: Packet, now: float) -> list[Reply]:
        replies: list[Reply] = []
        for servo in self._targets(packet, now):
            if len(packet.params) < 3:
                error = ErrorCode.DATA_LENGTH
            else:
                address = packet.params[0] | packet.params[1] << 8
                error = self._write_servo(servo, address, packet.params[2:], now)
            replies += self._unicast_reply(packet, servo, error)
        return replies

    def _reg_write(self, packet: Packet, now: float) -> list[Reply]:
        replies: list[Reply] = []
        for servo in self._targets(packet, now):
            error = ErrorCode.DATA_LENGTH
            if len(packet.params) >= 3:
                address, data = packet.params[0] | packet.params[1] << 8, packet.params[2:]
                error = servo.check_write(address, data)
                if not error:
                    servo.registered = (address, data)
                    servo.table[69] = 1
            replies += self._unicast_reply(packet, servo, error)
        return replies

    def _action(self, packet: Packet, now: float) -> list[Reply]:
        replies: list[Reply] = []
        for servo in self._targets(packet, now):
            error = ErrorCode.INSTRUCTION  # Action without a Reg Write
            if servo.registered is not None:
                error = self._write_servo(servo, *servo.registered, now)
                servo.registered, servo.table[69] = None, 0
            replies += self._unicast_reply(packet, servo, error)
        return replies

    def _reboot(self, packet: Packet, now: float) -> list[Reply]:
        replies: list[Reply] = []
        for servo in self._targets(packet, now):
            replies += self._unicast_reply(packet, servo, ErrorCode.OK)  # sent before it reboots
            servo.reboot(now, REBOOT_S)
            self.apply(servo)
        return replies

    def _sync_read(self, packet: Packet, now: float) -> list[Reply]:
        params = packet.params
        if packet.motor_id != BROADCAST_ID or len(params) < 5:
            return []
        address, length = struct.unpack_from("<HH", params)
        requests = [(motor_id, address, length) for motor_id in params[4:]]
        return self._read_many(requests, packet.instruction == Instruction.FAST_SYNC_READ, now)

    def _bulk_read(self, packet: Packet, now: float) -> list[Reply]:
        params = packet.params
        if packet.motor_id != BROADCAST_ID or not params or len(params) % 5:
            return []
        requests = [struct.unpack_from("<BHH", params, i) for i in range(0, len(params), 5)]
        return self._read_many(requests, packet.instruction == Instruction.FAST_BULK_READ, now)

    def _read_many(self, requests: list[tuple[int, int, int]], fast: bool,
                   now: float) -> list[Reply]:
        """Sync/Bulk Read: one status per motor in request order, or one Fast packet for all."""
        replies: list[Reply] = []
        blocks: list[tuple[int, int, bytes]] = []
        for motor_id, address, length in requests:
            servo = self._hear(motor_id, now)
            if servo is None or servo.table[68] < 1:
                if fast:
                    break  # its slot stays empty: the rest of the chain never comes
                continue
            error, data = servo.read(address, length)
            if fast:
                blocks.append((servo.motor_id, servo.error_byte(error), data))
            else:
                replies += self._status(servo, error, data, level=1)
        if fast and blocks:
            first = self._by_id[blocks[0][0]]
            return [(first, fast_status_packet(blocks, [r[2] for r in requests]))]
        return replies

    def _sync_write(self, packet: Packet, now: float) -> list[Reply]:
        params = packet.params
        if packet.motor_id != BROADCAST_ID or len(params) < 4:
            return []
        address, length = struct.unpack_from("<HH", params)
        if length == 0 or (len(params) - 4) % (length + 1):
            return []
        for i in range(4, len(params), length + 1):
            servo = self._hear(params[i], now)
            if servo is not None:
                self._write_servo(servo, address, params[i + 1 : i + 1 + length], now)
        return []

    def _bulk_write(self, packet: Packet, now: float) -> list[Reply]:
        params, i = packet.params, 0
        if packet.motor_id != BROADCAST_ID:
            return []
        while i + 5 <= len(params):
            motor_id, address, length = struct.unpack_from("<BHH", params, i)
            data = params[i + 5 : i + 5 + length]
            i += 5 + length
            servo = self._hear(motor_id, now)
            if servo is not None and len(data) == length:
                self._write_servo(servo, address, data, now)
        return []

    # -- the wire ----------------------------------------------------------------------------
    def transmit(self, write: Callable[[bytes], object], packet_bytes: int,
                 replies: list[Reply], now: float) -> None:
        """Writes the replies when their last byte would arrive, applying drop/corrupt/delay."""
        t = max(now, self._t.bus_free_at) + packet_bytes * self.byte_time
        if replies:
            t += self.faults.delay_s
        for servo, data in replies:
            t += servo.return_delay_s + len(data) * self.byte_time
            if self.faults.drop and self.rng.random() < self.faults.drop:
                continue
            if self.faults.corrupt and self.rng.random() < self.faults.corrupt:
                data = data[:-1] + bytes((data[-1] ^ 0xA5,))
            wait = t - time.monotonic()
            if wait > SPIN_S:
                time.sleep(wait - SPIN_S)
            while time.monotonic() < t:
                pass
            if log.isEnabledFor(logging.DEBUG):
                log.debug("-> %s", data.hex(" "))
            write(data)
        self._t.bus_free_at = t


def serve(emulator: BusEmulator, print_line: Callable[[str], None],
          on_command: Callable[[str], bool], stdin_fd: int | None = 0,
          quit_on_eof: bool = False) -> None:
    """Opens the pty, prints `port: PATH`, and serves until SIGINT/SIGTERM.

    Each line read from `stdin_fd` goes to `on_command`, which returns False to stop serving.
    At the end of stdin it stops if `quit_on_eof` (a parent process that died), else serves on.
    """
    master, slave = os.openpty()
    stop: list[bool] = []
    try:
        tty.setraw(slave)  # no byte translation; the slave stays open, or reads of master EIO
        os.set_blocking(master, False)
        previous = {sig: signal.signal(sig, lambda *_: stop.append(True))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        print_line(f"port: {os.ttyname(slave)}")
        try:
            _loop(emulator, master, stdin_fd, on_command, stop, quit_on_eof)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        os.close(master)
        os.close(slave)


def _write_to(fd: int) -> Callable[[bytes], object]:
    def write(data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):  # nobody reads and the pty is full: lost
            os.write(fd, data)
    return write


def _loop(emulator: BusEmulator, master: int, stdin_fd: int | None,
          on_command: Callable[[str], bool], stop: list[bool], quit_on_eof: bool) -> None:
    parser, pending_line = PacketParser(), b""
    write, debug = _write_to(master), log.isEnabledFor(logging.DEBUG)
    last_rx = time.monotonic()
    while not stop:
        watched = [master] if stdin_fd is None else [master, stdin_fd]
        timeout = max(0.0, emulator.next_step_due() - time.monotonic())
        ready, _, _ = select.select(watched, [], [], timeout)
        packets: list[Packet | CorruptPacket] = []
        if master in ready:
            with contextlib.suppress(BlockingIOError):
                chunk = os.read(master, 4096)
                last_rx = time.monotonic()  # the bytes' arrival: their wire time starts here
                if debug:
                    log.debug("<- %s", chunk.hex(" "))
                packets = parser.feed(chunk)
        elif parser.pending and time.monotonic() - last_rx > PARTIAL_PACKET_TIMEOUT_S:
            packets = parser.resync()
        arrived = last_rx if master in ready else time.monotonic()
        for packet in packets:  # back-to-back packets queue on the wire (bus_free_at)
            now = arrived
            emulator.transmit(write, packet.wire_bytes, emulator.handle(packet, now), now)
        if stdin_fd is not None and stdin_fd in ready:
            data = os.read(stdin_fd, 4096)
            if not data:
                stdin_fd = None
                if quit_on_eof:
                    stop.append(True)
            *lines, pending_line = (pending_line + data).split(b"\n")
            for line in lines:
                if not on_command(line.decode(errors="replace")):
                    stop.append(True)
        emulator.advance(time.monotonic())
