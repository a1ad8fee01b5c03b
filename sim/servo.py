"""One emulated X-series servo: its control table and the firmware rules around it.

Plain Python, no physics: the bus emulator feeds present values in (`sense`) and reads goals out.
What it follows (ROBOTIS e-Manual, XM430/XH430 control table and Protocol 2.0):

- Writes are checked item by item before any is applied (a failed write changes nothing):
  an address not in the table or a read-only item is an access error, a write covering part of
  an item a data-length error, a value outside an item's fixed range a data-range error, a goal
  beyond its Limit register (position limits 48/52, PWM 36, current 38, velocity 44) a data-limit
  error, and any EEPROM write (addresses below 64) while the torque is on an access error.
- Torque Enable keeps the Goal Position written earlier (as the real servo: turning the torque on
  drives to the old goal). It cannot be turned on while a hardware error is latched (the write is
  accepted but the torque stays off): only a reboot clears the error.
- Bus Watchdog (98, 20 ms units): with the torque on, no instruction to this motor within the
  period stops it (goal := present position), 98 reads -1 (0xFF) and goal writes are refused
  with a data-range error until 0 is written to 98. Writing 1..127 while it reads -1 is refused.
- Temperature: a first-order model, idle 35 °C, rising towards 35 + 50 * (I / I_stall)^2 with a
  60 s time constant; above the Temperature Limit (31, 80 °C as shipped) the overheating bit is
  latched and the torque goes off (when the Shutdown mask, 63, has that bit, as shipped).
- Only the position modes (3, 4 extended, 5 current-based) are emulated: other operating modes
  are refused with a data-range error.
- Reads past the end of the table answer an access error with zeros for the bytes asked, so the
  SDK's fixed-size readers never index an empty reply.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dclaw import hardware as hw
from dclaw.protocol2 import ALERT_BIT, ErrorCode

EEPROM_END = 64
TABLE_SIZE = 148  # through Backup Ready (147)
FIRMWARE_VERSION = 46
T_IDLE_C = 35.0
THERMAL_RISE_C = 50.0  # steady rise at the stall current
THERMAL_TAU_S = 60.0
OVERHEAT_MARGIN_C = 5.0  # `fault overheat` puts the temperature this far above the limit
OVERHEATING_BIT = 2
BAUD_CODES = {9600: 0, 57600: 1, 115200: 2, 1_000_000: 3, 2_000_000: 4, 3_000_000: 5,
              4_000_000: 6, 4_500_000: 7}
POSITION_MODES = (3, 4, 5)
EXTENDED_POSITION_RANGE = 1_048_575


@dataclass(frozen=True)
class ModelSpec:
    """Approximate e-Manual figures at the model's recommended voltage."""

    current_limit: int  # Current Limit (38) as shipped, in current units
    stall_torque_nm: float
    stall_current_a: float
    voltage_dv: int  # Present Input Voltage, 0.1 V

    @property
    def torque_constant(self) -> float:
        """N·m per A, taken as stall torque / stall current."""
        return self.stall_torque_nm / self.stall_current_a


MODEL_SPECS = {
    1000: ModelSpec(648, 2.5, 1.3, 120),  # XH430-W210
    1010: ModelSpec(648, 3.4, 1.3, 120),  # XH430-W350
    1020: ModelSpec(1193, 4.1, 2.3, 120),  # XM430-W350
    1030: ModelSpec(1193, 3.0, 2.3, 120),  # XM430-W210
    1040: ModelSpec(689, 2.5, 0.8, 240),  # XH430-V350
    1050: ModelSpec(689, 1.9, 0.8, 240),  # XH430-V210
}


@dataclass(frozen=True)
class Item:
    address: int
    size: int
    writable: bool = False
    low: int = 0
    high: int = 0
    signed: bool = False


_RO, _RW = False, True
ITEMS = (
    Item(0, 2), Item(2, 4), Item(6, 1),  # model number, model information, firmware
    Item(7, 1, _RW, 0, 252), Item(8, 1, _RW, 0, 7), Item(9, 1, _RW, 0, 254),
    Item(10, 1, _RW, 0, 13), Item(11, 1, _RW, 0, 16), Item(12, 1, _RW, 0, 255),
    Item(13, 1, _RW, 2, 2), Item(20, 4, _RW, -1_044_479, 1_044_479, True),
    Item(24, 4, _RW, 0, 1023), Item(31, 1, _RW, 0, 100), Item(32, 2, _RW, 0, 350),
    Item(34, 2, _RW, 0, 350), Item(36, 2, _RW, 0, 885), Item(38, 2, _RW, 0, 1193),
    Item(44, 4, _RW, 0, 1023), Item(48, 4, _RW, 0, 4095), Item(52, 4, _RW, 0, 4095),
    Item(60, 1, _RW, 0, 3), Item(63, 1, _RW, 0, 255),
    # RAM
    Item(64, 1, _RW, 0, 1), Item(65, 1, _RW, 0, 1), Item(68, 1, _RW, 0, 2),
    Item(69, 1), Item(70, 1),
    *(Item(a, 2, _RW, 0, 16383) for a in (76, 78, 80, 82, 84, 88, 90)),
    Item(98, 1, _RW, 0, 127, True),
    Item(100, 2, _RW, 0, 0, True), Item(102, 2, _RW, 0, 0, True),
    Item(104, 4, _RW, 0, 0, True),  # goal PWM/current/velocity: checked against their limits
    Item(108, 4, _RW, 0, 32767), Item(112, 4, _RW, 0, 32767),
    Item(116, 4, _RW, 0, 0, True),  # goal position: checked against the position limits
    Item(120, 2), Item(122, 1), Item(123, 1), Item(124, 2, signed=True),
    Item(126, 2, signed=True), Item(128, 4, signed=True), Item(132, 4, signed=True),
    Item(136, 4, signed=True), Item(140, 4, signed=True), Item(144, 2), Item(146, 1),
    Item(147, 1),
)
ITEM_AT: dict[int, Item] = {item.address + i: item for item in ITEMS for i in range(item.size)}
_BY_ADDRESS = {item.address: item for item in ITEMS}
_FORMAT = {(1, False): "<B", (1, True): "<b", (2, False): "<H", (2, True): "<h",
           (4, False): "<I", (4, True): "<i"}
GOAL_ITEMS = (100, 102, 104, 116)  # read-only while the bus watchdog has fired
# Goal items checked against +-(limit register), and goal position against [min, max].
_SYMMETRIC_LIMITS = {100: 36, 102: 38, 104: 44}


@dataclass
class ServoFaults:
    """Faults injected into one motor (see `sim.fault_commands`)."""

    silent: bool = False
    stuck: bool = False
    current_ma: float | None = None
    overheat: bool = False


class Servo:
    """The control table and firmware state of one motor."""

    def __init__(self, motor_id: int, model_number: int, baud_code: int, return_delay: int):
        self.joint = motor_id  # its place on the claw: the factory ID, kept if ID is rewritten
        self.spec = MODEL_SPECS[model_number]
        self.current_unit_ma = hw.current_unit_ma(model_number)
        self.table = bytearray(TABLE_SIZE)
        self.faults = ServoFaults()
        self.temperature = T_IDLE_C
        self.registered: tuple[int, bytes] | None = None  # a Reg Write waiting for Action
        self.watchdog_fired = False
        self.last_heard = 0.0  # when an instruction to this motor last arrived
        self.silent_until = 0.0  # rebooting
        eeprom = {0: model_number, 6: FIRMWARE_VERSION, 7: motor_id, 8: baud_code,
                  9: return_delay, 11: 3, 12: 255, 13: 2, 24: 10, 31: 80,
                  32: self.spec.voltage_dv + 40, 34: self.spec.voltage_dv - 25, 36: 885,
                  38: self.spec.current_limit, 44: 200, 48: 4095, 52: 0, 63: 52}
        for address, value in eeprom.items():
            self.set(address, value)
        self._reset_ram(goal_ticks=2048)

    def _reset_ram(self, goal_ticks: int) -> None:
        self.table[EEPROM_END:] = bytes(TABLE_SIZE - EEPROM_END)
        for address, value in {68: 2, 76: 1920, 78: 100, 84: 800, 100: self.get(36),
                               102: self.get(38), 116: goal_ticks, 140: goal_ticks,
                               144: self.spec.voltage_dv}.items():
            self.set(address, value)
        self.registered = None
        self.watchdog_fired = False

    # -- raw table access (no checks) -------------------------------------------------------
    def get(self, address: int) -> int:
        item = _BY_ADDRESS[address]
        return struct.unpack_from(_FORMAT[item.size, item.signed], self.table, address)[0]

    def set(self, address: int, value: int) -> None:
        item = _BY_ADDRESS[address]
        bits = 8 * item.size
        value = hw.to_signed(value & ((1 << bits) - 1), item.size) if item.signed else \
            value & ((1 << bits) - 1)
        struct.pack_into(_FORMAT[item.size, item.signed], self.table, address, value)

    @property
    def motor_id(self) -> int:
        return self.table[7]

    @property
    def torque_on(self) -> bool:
        return self.table[64] == 1

    @property
    def hardware_error(self) -> int:
        return self.table[70]

    @property
    def return_delay_s(self) -> float:
        return self.table[9] * 2e-6

    @property
    def goal_ticks(self) -> int:
        return self.get(116)

    @property
    def present_ticks(self) -> int:
        return self.get(132)

    def error_byte(self, code: int = ErrorCode.OK) -> int:
        return code | (ALERT_BIT if self.table[70] else 0)

    # -- instructions ------------------------------------------------------------------------
    def read(self, address: int, length: int) -> tuple[int, bytes]:
        if length == 0 or address + length > TABLE_SIZE:
            return ErrorCode.ACCESS, bytes(min(length, 1000))
        return ErrorCode.OK, bytes(self.table[address : address + length])

    def check_write(self, address: int, data: bytes) -> int:
        """The error a write would get (ErrorCode.OK if it would be applied)."""
        end = address + len(data)
        if not data or end > TABLE_SIZE:
            return ErrorCode.ACCESS
        pos = address
        while pos < end:
            item = ITEM_AT.get(pos)
            if item is None or not item.writable:
                return ErrorCode.ACCESS
            if item.address != pos or pos + item.size > end:
                return ErrorCode.DATA_LENGTH
            if item.address < EEPROM_END and self.torque_on:
                return ErrorCode.ACCESS
            fmt = _FORMAT[item.size, item.signed]
            error = self._check_value(item, struct.unpack_from(fmt, data, pos - address)[0])
            if error:
                return error
            pos += item.size
        return ErrorCode.OK

    def _check_value(self, item: Item, value: int) -> int:
        address = item.address
        if address in GOAL_ITEMS and self.watchdog_fired:
            return ErrorCode.DATA_RANGE
        if address in _SYMMETRIC_LIMITS:
            limit = self.get(_SYMMETRIC_LIMITS[address])
            return ErrorCode.OK if -limit <= value <= limit else ErrorCode.DATA_LIMIT
        if address == 116:
            if self.table[11] == 4:
                in_range = abs(value) <= EXTENDED_POSITION_RANGE
            else:
                in_range = self.get(52) <= value <= self.get(48)
            return ErrorCode.OK if in_range else ErrorCode.DATA_LIMIT
        if address == 11 and value not in POSITION_MODES:
            return ErrorCode.DATA_RANGE
        if address == 98 and self.watchdog_fired and value != 0:
            return ErrorCode.DATA_RANGE
        high = self.spec.current_limit if address == 38 else item.high
        return ErrorCode.OK if item.low <= value <= high else ErrorCode.DATA_RANGE

    def write(self, address: int, data: bytes, now: float) -> int:
        error = self.check_write(address, data)
        if error:
            return error
        was_on = self.torque_on
        self.table[address : address + len(data)] = data
        if address <= 98 < address + len(data) and self.table[98] == 0:
            self.watchdog_fired = False
        if self.torque_on and self.hardware_error:
            self.table[64] = 0  # shut down: only a reboot lets the torque on again
        if self.torque_on and not was_on:
            self.last_heard = now
        return ErrorCode.OK

    def reboot(self, now: float, silent_s: float) -> None:
        """Clears the hardware error and the RAM area (torque off, goal := present position)."""
        self._reset_ram(goal_ticks=self.present_ticks)
        self.silent_until = now + silent_s

    def latch_error(self, bit: int) -> None:
        """A hardware error: its bit in 70 (status packets then carry the alert), torque off."""
        self.table[70] |= 1 << bit
        self.table[64] = 0

    # -- time passing ------------------------------------------------------------------------
    def check_watchdog(self, now: float) -> bool:
        """True when the bus watchdog fires now (the caller then holds the motor)."""
        period = self.table[98]
        if not self.torque_on or self.watchdog_fired or not 0 < period <= 127:
            return False
        if now - self.last_heard <= period * hw.BUS_WATCHDOG_UNIT_S:
            return False
        self.watchdog_fired = True
        self.table[98] = 0xFF
        self.set(116, self.present_ticks)
        return True

    def sense(self, current_a: float, velocity_units: int, position_ticks: int,
              goal_ticks: int, dt: float, now: float) -> None:
        """Stores present values (and the temperature) for reads to return."""
        if self.faults.current_ma is not None:
            current = round(self.faults.current_ma / self.current_unit_ma)
        else:
            limit = self.get(38)
            current = max(-limit, min(limit, round(1000 * current_a / self.current_unit_ma)))
        self._update_temperature(abs(current) * self.current_unit_ma / 1000, dt)
        pwm = round(885 * max(-1.0, min(1.0, current_a / self.spec.stall_current_a)))
        moving = abs(velocity_units) > self.get(24)
        in_position = abs(goal_ticks - position_ticks) <= self.get(24)
        struct.pack_into("<HBBhhiiiiHB", self.table, 120, int(now * 1000) % 32768,
                         int(moving), int(in_position),
                         pwm, max(-32768, min(32767, current)), velocity_units,
                         position_ticks, velocity_units, goal_ticks,
                         self.spec.voltage_dv, max(0, min(255, round(self.temperature))))

    def _update_temperature(self, current_a: float, dt: float) -> None:
        limit = self.table[31]
        if self.faults.overheat:
            self.temperature = limit + OVERHEAT_MARGIN_C
        else:
            target = T_IDLE_C + THERMAL_RISE_C * (current_a / self.spec.stall_current_a) ** 2
            self.temperature += (target - self.temperature) * min(1.0, dt / THERMAL_TAU_S)
        overheating = 1 << OVERHEATING_BIT
        if self.temperature > limit and self.table[63] & overheating \
                and not self.table[70] & overheating:
            self.latch_error(OVERHEATING_BIT)
