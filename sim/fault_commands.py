"""The bus emulator's console: fault injection and inspection, one command a line.

Lines come from the emulator's stdin while it serves (so a test can inject at a chosen moment)
and from `dclaw emulate --fault SPEC` at start (SPEC is a line with or without `fault `):

    fault drop P            drop that fraction (0..1) of replies (the client times out)
    fault corrupt P         spoil the CRC of that fraction of replies
    fault delay MS          every instruction's replies start MS milliseconds later
    fault hw_error ID BIT   latch hardware-error bit BIT (0..7, or input_voltage, overheating,
                            encoder, electrical_shock, overload): alert bit + torque off
    fault overheat ID       the temperature jumps to the limit + 5 °C: overheating bit, torque off
    fault stuck ID          the joint stays where it is; its present current grows as the goal
                            moves away (up to Current Limit)
    fault current ID MA     present current reads MA milliamps
    fault silent ID         the motor neither hears nor answers anything (its watchdog still runs)
    clear                   removes every fault and cools overheated motors; a latched hardware
                            error stays until the motor is rebooted, as on the robot
    status                  one line of JSON: motors, valve angle, faults
    help                    this list
    quit                    stop serving

Each command is answered with one line, flushed: `ok <the command>` or `error: <why>`; `status`
prints its JSON line first. IDs are the motors' present IDs.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sim.bus_emulator import BusEmulator
from sim.servo import T_IDLE_C, Servo, ServoFaults

HW_ERROR_NAMES = {"input_voltage": 0, "overheating": 2, "encoder": 3, "electrical_shock": 4,
                  "overload": 5}  # the bits of Hardware Error Status (70), hw.HW_ERROR_BITS


class CommandError(ValueError):
    """A console line that cannot be carried out; the message says why."""


def handle_line(emulator: BusEmulator, line: str, print_line: Callable[[str], None]) -> bool:
    """Runs one console line, printing its answer; False when the line was `quit`."""
    words = line.split()
    if not words:
        return True
    try:
        for out in execute(emulator, words):
            print_line(out)
    except CommandError as exc:
        print_line(f"error: {exc} (try `help`)")
        return True
    print_line("ok " + " ".join(words))
    return words != ["quit"]


def execute(emulator: BusEmulator, words: list[str]) -> list[str]:
    """Carries out one command; returns the lines it prints before `ok`."""
    command, args = words[0], words[1:]
    if command == "fault":
        if not args:
            raise CommandError("fault needs a kind: drop, corrupt, delay, hw_error, overheat, "
                               "stuck, current, silent")
        _fault(emulator, args[0], args[1:])
        return []
    if args:
        raise CommandError(f"{command} takes no arguments")
    if command == "clear":
        clear(emulator)
        return []
    if command == "status":
        return [json.dumps(status(emulator), separators=(",", ":"))]
    if command == "help":
        return [line for line in (__doc__ or "").splitlines() if line.startswith("    ")]
    if command == "quit":
        return []
    raise CommandError(f"unknown command {command!r}")


def _fault(emulator: BusEmulator, kind: str, args: list[str]) -> None:
    faults = emulator.faults
    if kind in ("drop", "corrupt", "delay"):
        (value,) = _numbers(kind, args, 1)
        if kind == "delay":
            faults.delay_s = _in_range(value, 0.0, 10_000.0, "MS") / 1000
        else:
            setattr(faults, kind, _in_range(value, 0.0, 1.0, "P"))
        return
    arity = {"hw_error": 2, "current": 2, "overheat": 1, "stuck": 1, "silent": 1}
    if kind not in arity:
        raise CommandError(f"unknown fault {kind!r}")
    if len(args) != arity[kind]:
        raise CommandError(f"fault {kind} takes {arity[kind]} argument(s), got {len(args)}")
    servo = _motor(emulator, args[0])
    if kind == "hw_error":
        servo.latch_error(_hw_bit(args[1]))
    elif kind == "current":
        servo.faults.current_ma = _numbers(kind, args[1:], 1)[0]
    elif kind == "overheat":
        servo.faults.overheat = True  # the next reading latches the overheating error
    elif kind == "stuck":
        servo.faults.stuck = True
        emulator.claw.set_stuck(servo.joint, True)
    else:
        servo.faults.silent = True
    emulator.refresh(servo)


def clear(emulator: BusEmulator) -> None:
    faults = emulator.faults
    faults.drop = faults.corrupt = faults.delay_s = 0.0
    for servo in emulator.servos:
        if servo.faults.overheat:
            servo.temperature = T_IDLE_C
        servo.faults = ServoFaults()
        emulator.claw.set_stuck(servo.joint, False)


def status(emulator: BusEmulator) -> dict:
    motors = {}
    for s in emulator.servos:
        active = [name for name, value in vars(s.faults).items() if value not in (False, None)]
        motors[str(s.motor_id)] = {
            "torque": int(s.torque_on), "goal": s.goal_ticks, "position": s.present_ticks,
            "velocity": s.get(128), "current": s.get(126), "temperature": s.table[146],
            "hardware_error": s.hardware_error, "watchdog": s.get(98), "faults": active,
        }
    bus = emulator.faults
    return {"sim_time": round(emulator.sim_time, 4),
            "valve_angle": round(emulator.claw.valve_angle(), 5),
            "faults": {"drop": bus.drop, "corrupt": bus.corrupt, "delay_ms": bus.delay_s * 1000},
            "motors": motors}


def _motor(emulator: BusEmulator, word: str) -> Servo:
    try:
        return emulator.servo(int(word))
    except (KeyError, ValueError):
        ids = " ".join(str(s.motor_id) for s in emulator.servos)
        raise CommandError(f"no motor {word!r} on the bus (motors: {ids})") from None


def _hw_bit(word: str) -> int:
    if word in HW_ERROR_NAMES:
        return HW_ERROR_NAMES[word]
    if word.isdigit() and int(word) <= 7:
        return int(word)
    raise CommandError(f"hardware-error bit {word!r}: 0..7 or one of {sorted(HW_ERROR_NAMES)}")


def _numbers(kind: str, args: list[str], n: int) -> list[float]:
    if len(args) != n:
        raise CommandError(f"fault {kind} takes {n} number(s), got {len(args)}")
    try:
        return [float(a) for a in args]
    except ValueError:
        raise CommandError(f"fault {kind}: not a number in {args}") from None


def _in_range(value: float, low: float, high: float, name: str) -> float:
    if not low <= value <= high:
        raise CommandError(f"{name} must lie in [{low:g}, {high:g}], got {value:g}")
    return value
