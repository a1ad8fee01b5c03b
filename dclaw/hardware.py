"""The D'Claw's servos, once: motor IDs, the X-series control table, units and calibration.

Shared by the hardware backend (`robot/dynamixel.py`) and the bus emulator (`sim/bus_emulator.py`)
so that both sides of the bus read the same table. Plain Python and numpy, no SDK import.

Sources: ROBEL 0.1.2 `dclaw/base_env.py` (motor IDs, calibration map),
`components/robot/dynamixel_client.py` (addresses, units), and the ROBOTIS e-Manual for the
XM430/XH430 control tables (addresses, model numbers, current units, hardware-error bits).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

# -- motor IDs (ROBEL's D'Claw) -------------------------------------------------------------
CLAW_IDS: tuple[int, ...] = (10, 11, 12, 20, 21, 22, 30, 31, 32)  # finger 1..3: top, mid, bottom
VALVE_ID = 50  # the object (valve) motor
GUIDE_ID = 60  # optional guide motor
TOP_IDS = (10, 20, 30)
MIDDLE_IDS = (11, 21, 31)
BOTTOM_IDS = (12, 22, 32)

# -- X-series control table (Protocol 2.0): (address, size in bytes) -------------------------
MODEL_NUMBER = (0, 2)
FIRMWARE_VERSION = (6, 1)
ID = (7, 1)
BAUD_RATE = (8, 1)
RETURN_DELAY_TIME = (9, 1)  # units of 2 us; 0 recommended for a 10 Hz loop
OPERATING_MODE = (11, 1)  # 3: position control
TEMPERATURE_LIMIT = (31, 1)
TORQUE_ENABLE = (64, 1)
LED = (65, 1)
STATUS_RETURN_LEVEL = (68, 1)
HARDWARE_ERROR_STATUS = (70, 1)
BUS_WATCHDOG = (98, 1)  # units of 20 ms; 0 disables; the servo stops when it expires
GOAL_CURRENT = (102, 2)
GOAL_VELOCITY = (104, 4)
PROFILE_ACCELERATION = (108, 4)
PROFILE_VELOCITY = (112, 4)
GOAL_POSITION = (116, 4)
MOVING = (122, 1)
PRESENT_PWM = (124, 2)
PRESENT_CURRENT = (126, 2)
PRESENT_VELOCITY = (128, 4)
PRESENT_POSITION = (132, 4)
PRESENT_INPUT_VOLTAGE = (144, 2)
PRESENT_TEMPERATURE = (146, 1)
CONTROL_TABLE_SIZE = 147

# One bulk read per tick: current (2) + velocity (4) + position (4) from address 126.
PRESENT_CUR_VEL_POS = (126, 10)

BUS_WATCHDOG_UNIT_S = 0.020

# Hardware Error Status (address 70) bits.
HW_ERROR_BITS = {
    0: "input voltage error",
    2: "overheating",
    3: "motor encoder error",
    4: "electrical shock",
    5: "overload",
}
STATUS_ALERT_BIT = 0x80  # the status packet's error byte: a hardware error is latched

# -- units --------------------------------------------------------------------------------------
TICKS_PER_REV = 4096
POSITION_UNIT = 2 * math.pi / TICKS_PER_REV  # rad per tick
VELOCITY_UNIT = 0.229 * 2 * math.pi / 60  # rad/s per unit (0.229 rpm)
# Present Current unit (mA) by model number (ROBOTIS e-Manual).
MODELS: dict[int, tuple[str, float]] = {
    1000: ("XH430-W210", 2.69),
    1010: ("XH430-W350", 2.69),
    1020: ("XM430-W350", 2.69),
    1030: ("XM430-W210", 2.69),
    1040: ("XH430-V350", 1.34),
    1050: ("XH430-V210", 1.34),
}
DEFAULT_MODEL_NUMBER = 1030  # XM430-W210


def current_unit_ma(model_number: int) -> float:
    """mA per unit of Present Current for a model; unknown models raise with the number."""
    try:
        return MODELS[model_number][1]
    except KeyError:
        raise ValueError(
            f"unknown Dynamixel model number {model_number}; known: "
            + ", ".join(f"{n} ({name})" for n, (name, _) in MODELS.items())
        ) from None


def to_signed(value: int, size: int) -> int:
    bits = 8 * size
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def to_unsigned(value: int, size: int) -> int:
    return value & ((1 << (8 * size)) - 1)


def hardware_error_text(status: int) -> str:
    names = [name for bit, name in HW_ERROR_BITS.items() if status & (1 << bit)]
    return ", ".join(names) if names else f"status 0x{status:02x}"


# -- calibration --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotorCalibration:
    """joint angle (rad) = scale * ticks * POSITION_UNIT + offset, as ROBEL's CalibrationMap."""

    scale: float = 1.0
    offset: float = 0.0

    def ticks_to_angle(self, ticks: int) -> float:
        return self.scale * ticks * POSITION_UNIT + self.offset

    def angle_to_ticks(self, angle: float) -> int:
        return round((angle - self.offset) / (self.scale * POSITION_UNIT))

    def velocity_to_rad_s(self, units: int) -> float:
        return self.scale * units * VELOCITY_UNIT


# ROBEL `DEFAULT_DCLAW_CALIBRATION_MAP`.
DEFAULT_CALIBRATION: dict[int, MotorCalibration] = {
    **{i: MotorCalibration(1.0, -math.pi / 2) for i in TOP_IDS},
    **{i: MotorCalibration(1.0, -math.pi) for i in (*MIDDLE_IDS, *BOTTOM_IDS)},
    VALVE_ID: MotorCalibration(1.0, -math.pi),
    GUIDE_ID: MotorCalibration(1.0, -math.pi),
}

_CALIBRATION_HEADER = """\
# D'Claw calibration: joint angle (rad) = scale * ticks * 2*pi/4096 + offset, per motor ID.
# Defaults are ROBEL's DEFAULT_DCLAW_CALIBRATION_MAP. Edit offsets if your horns are mounted
# differently; check with `dclaw run --backend dynamixel --check` before training.
"""


def calibration_toml(calibration: dict[int, MotorCalibration] | None = None) -> str:
    """The calibration as an editable TOML document."""
    calibration = calibration or DEFAULT_CALIBRATION
    lines = [_CALIBRATION_HEADER]
    for motor_id, cal in sorted(calibration.items()):
        lines.append(f"[motors.{motor_id}]\nscale = {cal.scale!r}\noffset = {cal.offset!r}\n")
    return "\n".join(lines)


def load_calibration(path: Path | None) -> dict[int, MotorCalibration]:
    """Reads a calibration file (TOML, see `calibration_toml`); None gives ROBEL's defaults.

    Motors missing from the file keep their default; a malformed file raises ValueError naming it.
    """
    calibration = dict(DEFAULT_CALIBRATION)
    if path is None:
        return calibration
    try:
        document = tomllib.loads(Path(path).read_text())
        for key, entry in document.get("motors", {}).items():
            calibration[int(key)] = MotorCalibration(
                scale=float(entry.get("scale", 1.0)), offset=float(entry.get("offset", 0.0)))
    except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"calibration file {path}: {exc}") from exc
    for motor_id, cal in calibration.items():
        if cal.scale == 0 or not math.isfinite(cal.scale) or not math.isfinite(cal.offset):
            raise ValueError(f"calibration file {path}: motor {motor_id} has scale {cal.scale}, "
                             f"offset {cal.offset}")
    return calibration
