"""What the runner needs from a robot: the backend protocol, its state record, safety stops.

Two backends implement `Backend`: `robot.dynamixel.DynamixelBackend` (the real servos, or the bus
emulator) and `sim.backend.SimBackend` (MuJoCo in-process). The runner only sees this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class RobotState:
    """One reading of the robot at the start of a tick (joint units: rad, rad/s)."""

    qpos: np.ndarray  # (9,) claw joint angles, motor order 10, 11, 12, 20, ... 32
    qvel: np.ndarray  # (9,)
    valve: float  # valve angle, rad (unwrapped)
    time: float  # monotonic seconds when read
    current_ma: dict[int, float] = field(default_factory=dict)  # per motor ID, when measured
    temperature_c: dict[int, float] = field(default_factory=dict)  # per motor ID, when measured
    ok: bool = True  # False: the read failed and these values are the previous reading's


class SafetyStop(Exception):
    """The robot was (or must be) stopped: `cause` is a short key, the message says why."""

    def __init__(self, cause: str, message: str, **details: Any):
        super().__init__(message)
        self.cause, self.message, self.details = cause, message, details

    def as_event(self) -> dict[str, Any]:
        return {"kind": "safety_stop", "message": self.message,
                "details": {"cause": self.cause, **self.details}}


class ResetFailed(SafetyStop):
    """The scripted reset could not bring every joint to the reset pose."""


class Backend(Protocol):
    name: str

    def connect(self) -> None:
        """Opens the robot (port, ping, configuration); raises with a message saying what to fix."""

    def reset(self) -> RobotState:
        """Brings the claw to the reset pose and the valve to 0; raises ResetFailed."""

    def read(self) -> RobotState:
        """One reading; raises SafetyStop on a safety limit."""

    def write(self, targets: np.ndarray) -> None:
        """Claw joint targets (rad), already clipped and speed-bounded by the runner."""

    def keepalive(self) -> None:
        """Called while the runner waits between episodes (keeps a bus watchdog fed)."""

    def stop(self, reason: str) -> None:
        """Stop and hold where the claw is, then torque off. Never raises."""

    def close(self) -> None:
        """Releases the robot (torque off, port closed). Never raises."""

    def describe(self) -> dict[str, Any]:
        """A few facts for heartbeats and the console."""
