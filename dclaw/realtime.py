"""Real-time scheduling for a control loop: Linux SCHED_FIFO for the calling thread, so that the
tick preempts ordinary work (a trainer, a browser, PostgreSQL) on a shared machine, as robot
control stacks do (ros2_control's controller manager runs its loop at SCHED_FIFO 50).

Plain `os.sched_setscheduler`: the standard library has it; no package adds anything here.
"""

from __future__ import annotations

import os

HOW_TO_ALLOW = ("run as root, or let the user have it: a line `@realtime - rtprio 99` in "
                "/etc/security/limits.conf with the user in group realtime, or `setcap "
                "cap_sys_nice+ep` on the Python binary")


def set_realtime_priority(priority: int) -> str | None:
    """SCHED_FIFO at `priority` (1-99) for the calling thread and the threads it starts later.
    Returns None when it took effect, else a sentence saying why not (the caller goes on at
    normal priority: timing gets worse, safety does not depend on it)."""
    if not 1 <= priority <= 99:
        raise ValueError(f"real-time priority {priority} is not in 1..99")
    if not hasattr(os, "sched_setscheduler"):
        return "real-time priority needs Linux (SCHED_FIFO)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        return f"real-time priority {priority} not permitted: {HOW_TO_ALLOW}"
    except OSError as exc:
        return f"real-time priority {priority} refused: {exc}"
    return None


def current_policy() -> str:
    """The calling thread's scheduling policy, for logs and tests."""
    if not hasattr(os, "sched_getscheduler"):
        return "unknown"
    policy = os.sched_getscheduler(0)
    return {os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}.get(policy, "other")
