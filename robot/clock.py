"""The 10 Hz deadline clock and the loop-timing figures uploaded with each episode.

Deadlines are absolute (`start + k * period` on the monotonic clock), so a late tick never
shifts the ticks after it: no drift over an episode. Written by hand because it is twenty lines
and the timing behaviour (sleep, then a short spin) is the point.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# time.sleep() wakes late by tens of microseconds, by milliseconds when other processes share
# the cores: sleep until this long before the deadline, then spin on the clock for the rest
# (1.5% of a core at 10 Hz).
SPIN_S = 0.0015


class DeadlineClock:
    """Tick k is due at `start + k * period`; `wait()` returns when the next one is due.

    `paced=False` never sleeps (the sim as fast as it goes); the figures are still recorded.
    """

    def __init__(self, period: float, paced: bool = True,
                 now: Callable[[], float] = time.monotonic):
        self.period, self.paced, self._now = period, paced, now
        self.start = now()
        self.tick = 0

    def deadline(self, tick: int) -> float:
        return self.start + tick * self.period

    def wait(self) -> tuple[int, float]:
        """Waits for the next tick's deadline; returns (tick, lateness in seconds, >= 0)."""
        due = self.deadline(self.tick)
        if self.paced:
            remaining = due - self._now()
            if remaining > SPIN_S:
                time.sleep(remaining - SPIN_S)
            while self._now() < due:
                pass
        now = self._now()
        tick, self.tick = self.tick, self.tick + 1
        return tick, max(0.0, now - due) if self.paced else 0.0


@dataclass
class LoopTiming:
    """Per-tick figures of one episode: lateness of each tick's start, work time per tick (wall
    clock, waiting on the bus included) and the loop thread's own CPU time in that work."""

    period: float
    period_errors: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    overruns: int = 0
    streak: int = 0  # consecutive ticks whose work ran past the next deadline

    def record(self, lateness: float, work: float, cpu: float | None = None) -> None:
        self.period_errors.append(lateness)
        self.compute.append(work)
        if cpu is not None:
            self.cpu.append(cpu)
        if lateness + work > self.period:
            self.overruns += 1
            self.streak += 1
        else:
            self.streak = 0

    def summary(self) -> dict[str, float]:
        """The figures uploaded with the episode, in milliseconds (and counts)."""
        out: dict[str, float] = {"ticks": float(len(self.compute)),
                                 "overruns": float(self.overruns)}
        for name, values in (("period_error", self.period_errors), ("compute", self.compute),
                             ("cpu", self.cpu)):
            if values:
                ms = np.asarray(values) * 1e3
                out[f"{name}_p50_ms"] = round(float(np.percentile(ms, 50)), 4)
                out[f"{name}_p99_ms"] = round(float(np.percentile(ms, 99)), 4)
                out[f"{name}_max_ms"] = round(float(ms.max()), 4)
        return out
