"""Safety limits of the hardware backend and the checks that turn a reading into a stop.

Each check raises `SafetyStop` with a message that names the motor, the value and the limit; the
runner then holds the claw, turns the torque off and reports the stop to the service.
"""

from __future__ import annotations

from dataclasses import dataclass

from robot.backend import RobotState, SafetyStop


@dataclass(frozen=True)
class SafetyLimits:
    # ROBEL counts readings over 200 mA as "violations"; a finger pressing on the valve draws
    # several hundred mA, so the stop is higher and must last `current_reads` readings.
    max_current_ma: float = 1500.0
    current_reads: int = 3
    # X-series shut down by themselves at their Temperature Limit (80 °C by default): stop first.
    max_temperature_c: float = 70.0
    # Consecutive failed bus reads (timeouts, CRC errors) before stopping.
    max_failed_reads: int = 3
    # Consecutive ticks whose work ran past the next deadline before stopping.
    max_missed_deadlines: int = 3
    # Bus watchdog: a motor stops by itself this long after the runner stops talking to it.
    watchdog_s: float = 0.5
    # Hold the claw this long after a stop before turning the torque off.
    hold_s: float = 0.5


class SafetyMonitor:
    """Keeps the streaks across readings; `check` raises on the first limit crossed."""

    def __init__(self, limits: SafetyLimits):
        self.limits = limits
        self.failed_reads = 0
        self._over_current: dict[int, int] = {}

    def check(self, state: RobotState) -> None:
        limits = self.limits
        if not state.ok:
            self.failed_reads += 1
            if self.failed_reads >= limits.max_failed_reads:
                raise SafetyStop("bus", f"{self.failed_reads} consecutive bus reads failed "
                                        "(check the cable, power and baud rate)",
                                 failed_reads=self.failed_reads)
            return
        self.failed_reads = 0
        for motor, ma in state.current_ma.items():
            if abs(ma) > limits.max_current_ma:
                self._over_current[motor] = self._over_current.get(motor, 0) + 1
                if self._over_current[motor] >= limits.current_reads:
                    raise SafetyStop(
                        "current", f"motor {motor}: current {abs(ma):.0f} mA above the limit "
                        f"{limits.max_current_ma:.0f} mA for {limits.current_reads} readings "
                        "(blocked finger or stuck motor?)", motor=motor, current_ma=round(ma, 1))
            else:
                self._over_current.pop(motor, None)
        for motor, celsius in state.temperature_c.items():
            if celsius > limits.max_temperature_c:
                raise SafetyStop(
                    "temperature", f"motor {motor}: temperature {celsius:.0f} °C above the limit "
                    f"{limits.max_temperature_c:.0f} °C (let it cool down)", motor=motor,
                    temperature_c=celsius)

    def missed_deadlines(self, streak: int) -> None:
        if streak >= self.limits.max_missed_deadlines:
            raise SafetyStop("deadline", f"{streak} consecutive ticks missed their 10 Hz deadline "
                                         "(the PC or the bus is too slow)", streak=streak)
