"""The `dclaw` command. Each subcommand imports its part lazily, so the runner needs no torch."""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="dclaw",
    help="Train a ROBEL D'Claw with Unified RL: simulator, learner, service and robot runner.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


class SimPolicy(StrEnum):
    random = "random"
    zero = "zero"


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # one line per request drowns the runner's own output
        logging.getLogger("httpx").setLevel(logging.WARNING)


@app.command()
def sim(
    policy: Annotated[SimPolicy, typer.Option(help="Uniformly random actions, or all zeros.")] = (
        SimPolicy.random
    ),
    episodes: Annotated[int, typer.Option(min=1, help="Episodes to run.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed for the env and the random policy.")] = 0,
    render: Annotated[
        Path | None,
        typer.Option(help="Write each frame of the first episode as PNG into this directory."),
    ] = None,
) -> None:
    """Run a random or zero policy on the simulated DClawTurnFixed-v0 and print the returns."""
    if render is not None and "MUJOCO_GL" not in os.environ and "DISPLAY" not in os.environ:
        # Headless: MuJoCo's default (GLFW) needs a display; EGL renders offscreen.
        os.environ["MUJOCO_GL"] = "egl"
    from sim.demo import run_demo

    try:
        run_demo(policy=policy.value, episodes=episodes, seed=seed, render_dir=render)
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc


class Backend(StrEnum):
    sim = "sim"
    dynamixel = "dynamixel"


class BusRead(StrEnum):
    bulk = "bulk"
    fast_sync = "fast-sync"


@app.command()
def run(
    run_id: Annotated[int | None, typer.Option("--run", min=1,
                                               help="The run to feed (its id).")] = None,
    learner: Annotated[str, typer.Option(envvar="DCLAW_LEARNER_URL",
                                         help="The learner service's URL.")] = (
        "http://127.0.0.1:8000"),
    name: Annotated[str, typer.Option(help="This robot's name, unique per run "
                                           "(default: the host name).")] = "",
    backend: Annotated[Backend, typer.Option(help="sim: MuJoCo in-process; dynamixel: the "
                                                  "servos (or `dclaw emulate`).")] = Backend.sim,
    device: Annotated[str, typer.Option(help="Serial port of the U2D2 (dynamixel).")] = (
        "/dev/ttyUSB0"),
    baud: Annotated[int, typer.Option(help="Bus baud rate (dynamixel).")] = 1_000_000,
    calibration: Annotated[Path | None, typer.Option(
        help="Calibration TOML (dynamixel); default: ROBEL's map (write it out with "
             "--write-calibration).")] = None,
    episodes: Annotated[int | None, typer.Option(
        min=1, help="Stop after N episodes (default: until the run stops).")] = None,
    unpaced: Annotated[bool, typer.Option(
        "--unpaced", help="sim: run as fast as it goes, not at 10 Hz.")] = False,
    spool: Annotated[Path, typer.Option(
        envvar="DCLAW_SPOOL_DIR", help="Where episodes wait until the service has them.")] = (
        Path("dclaw-spool")),
    seed: Annotated[int | None, typer.Option(help="Seed of stochastic actions (and the sim).")] = (
        None),
    max_current_ma: Annotated[float, typer.Option(help="Safety stop above this current...")] = (
        1500.0),
    current_reads: Annotated[int, typer.Option(help="...for this many readings in a row.")] = 3,
    max_temperature_c: Annotated[float, typer.Option(
        help="Safety stop above this temperature (°C).")] = 70.0,
    max_failed_reads: Annotated[int, typer.Option(help="Safety stop after this many failed bus "
                                                       "reads in a row.")] = 3,
    max_missed_deadlines: Annotated[int, typer.Option(help="Safety stop after this many ticks "
                                                           "in a row miss their deadline.")] = 3,
    watchdog_ms: Annotated[int, typer.Option(help="Bus watchdog: motors stop by themselves this "
                                                  "long after the runner goes silent.")] = 500,
    reboot: Annotated[bool, typer.Option(
        "--reboot", help="Reboot motors that report a hardware error at start (after you fixed "
                         "the cause).")] = False,
    bus_read: Annotated[BusRead, typer.Option(
        help="dynamixel: bulk (Bulk Read, one reply per motor) or fast-sync (Fast Sync Read, one "
             "reply for all: less wire time, where the servos' firmware has it).")] = BusRead.bulk,
    emulate: Annotated[bool, typer.Option(
        "--emulate", help="dynamixel: start `dclaw emulate` and run on its bus instead of "
                          "--device (no hardware).")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="dynamixel: connect, print each joint's calibrated angle and current, "
                        "and exit.")] = False,
    write_calibration: Annotated[Path | None, typer.Option(
        help="Write ROBEL's default calibration to this file to edit, and exit.")] = None,
    realtime_priority: Annotated[int | None, typer.Option(
        min=1, max=99, help="Run the control loop at this SCHED_FIFO priority (Linux; root or "
                            "rtprio in limits.conf), and the --emulate bus too; e.g. 50.")] = None,
) -> None:
    """Run the assigned policy on the robot (or the sim) at 10 Hz and upload every episode.

    The runner token comes from DCLAW_RUNNER_TOKEN. Exit codes: 0 done or the run stopped,
    1 error, 3 safety stop, 4 refused by the service (token, run id).
    """
    import socket

    from dclaw.hardware import calibration_toml
    from robot.safety import SafetyLimits

    if write_calibration is not None:
        write_calibration.write_text(calibration_toml())
        typer.echo(f"wrote {write_calibration}; pass it with --calibration")
        return
    limits = SafetyLimits(
        max_current_ma=max_current_ma, current_reads=current_reads,
        max_temperature_c=max_temperature_c, max_failed_reads=max_failed_reads,
        max_missed_deadlines=max_missed_deadlines, watchdog_s=watchdog_ms / 1000)
    if run_id is None and not check:
        raise _refused(ValueError("--run is required: the id of a run (GET /api/v1/runs)"))
    if emulate and backend is not Backend.dynamixel:
        raise _refused(ValueError("--emulate goes with --backend dynamixel"))
    emulator = None
    if emulate:
        from sim.emulator_process import EmulatorProcess

        args = ["--baud", str(baud)] + (["--calibration", str(calibration)] if calibration
                                        else [])
        if realtime_priority is not None:
            args += ["--realtime-priority", str(realtime_priority)]
        emulator = EmulatorProcess(*args)
        device = emulator.port
        typer.echo(f"Dynamixel bus emulator on {device}")
    try:
        if backend is Backend.sim:
            from sim.backend import SimBackend

            robot = SimBackend(seed=seed)
        else:
            from robot.dynamixel import open_backend

            try:
                robot = open_backend(device, baud, calibration, limits, reboot,
                                     bus_read.value)
            except ValueError as exc:
                raise _refused(exc) from exc
        if check:
            raise typer.Exit(_check_robot(robot))
        from robot.runner import Runner, RunnerConfig

        config = RunnerConfig(
            learner_url=learner, run_id=run_id, name=name or socket.gethostname(),
            token=os.environ.get("DCLAW_RUNNER_TOKEN"), episodes=episodes, paced=not unpaced,
            spool_dir=spool, seed=seed, limits=limits, realtime_priority=realtime_priority)
        code = Runner(config, robot).run()
    finally:
        if emulator is not None:
            emulator.close()
    raise typer.Exit(code)


@app.command()
def demo(
    emulator: Annotated[bool, typer.Option("--emulator",
                                           help="Run the robot on the Dynamixel bus emulator "
                                                "(through dynamixel-sdk) instead of the sim.")] = (
        False),
    port: Annotated[int, typer.Option(help="Port of the service and dashboard.")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="Database, logs and spool; kept between runs.")] = (
        Path("demo-data")),
    episodes: Annotated[int | None, typer.Option(
        min=1, help="Stop after N episodes [default: until Ctrl-C].")] = None,
) -> None:
    """The whole system on this machine: service + trainer + dashboard + a runner on the sim.

    SQLite in --data-dir, a Unified RL run `demo` (cpu-small preset), dev-mode tokens. Ctrl-C
    stops everything cleanly; running it again resumes the same run.
    """
    from dclaw.demo import Demo

    raise typer.Exit(Demo(data_dir, port, emulator, episodes).main())


def _check_robot(robot) -> int:
    """Connects, prints one reading, releases the robot; for setting up the hardware."""
    from dclaw.hardware import CLAW_IDS

    try:
        robot.connect()
        state = robot.read()
    except Exception as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        return 2
    finally:
        robot.close()
    for motor, angle, velocity in zip(CLAW_IDS, state.qpos, state.qvel, strict=True):
        current = state.current_ma.get(motor)
        typer.echo(f"motor {motor}: {angle:+.3f} rad ({angle * 57.2958:+7.1f}°)  "
                   f"{velocity:+.2f} rad/s" + (f"  {current:.0f} mA" if current is not None
                                               else ""))
    typer.echo(f"valve: {state.valve:+.3f} rad")
    return 0


class Algorithm(StrEnum):
    unified = "unified"
    sac = "sac"
    mbrl = "mbrl"


@app.command()
def train(
    algo: Annotated[Algorithm, typer.Option(help="Unified RL, or one of its two ablations.")] = (
        Algorithm.unified
    ),
    episodes: Annotated[int, typer.Option(min=1, help="Episodes in all (resumes count).")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the learner and the env.")] = 0,
    preset: Annotated[
        str, typer.Option(help="dclaw-paper (Table 2 sizes) or cpu-small (tests, laptops).")
    ] = "dclaw-paper",
    out: Annotated[
        Path | None, typer.Option(help="Run directory [default: runs/ALGO-PRESET-sSEED].")
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if present), cpu or cuda.")] = "auto",
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Episodes per checkpoint.")] = 10,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a config field, KEY=VALUE (nested as section__field, e.g. "
            "sac__batch_size=128 or mb_policy__hidden=[512,512]); repeatable.",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    prior: Annotated[
        Path | None,
        typer.Option(help="An earlier run directory: start the buffer with its last "
                     "--prior-count successful episodes (not learning from scratch)."),
    ] = None,
    prior_count: Annotated[
        int, typer.Option(min=1, help="How many successful episodes --prior adds.")
    ] = 5,
) -> None:
    """Run Alg. 1 in-process on the simulator: per-episode JSONL, checkpoint, learning-curve PNG.

    Running it again with the same --out resumes from the last checkpoint.
    """
    import gymnasium

    import sim
    from dclaw import task
    from learner.config import PRESETS, make_config
    from learner.offline import CHECKPOINT_FILE, Prior, episodes_from_run
    from learner.offline import train as train_offline
    from learner.report import load_run, plot_run

    if preset not in PRESETS:
        raise typer.BadParameter(f"choose one of {sorted(PRESETS)}", param_hint="--preset")
    try:
        config = make_config(preset, algorithm=algo.value, seed=seed, device=device,
                             **_parse_overrides(overrides or []))
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from exc
    run_dir = out or Path("runs") / f"{algo.value}-{preset}-s{seed}"
    prior_episodes = None
    if prior is not None and not (run_dir / CHECKPOINT_FILE).exists():
        try:
            found = episodes_from_run(prior, prior_count, keep=task.episode_succeeded)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--prior") from exc
        if not found:
            raise typer.BadParameter(f"{prior} holds no successful episode", param_hint="--prior")
        prior_episodes = Prior(source=str(prior.resolve()), episodes=found)
    elif prior is not None:  # resuming: only the source is checked against run.json
        prior_episodes = Prior(source=str(prior.resolve()), episodes=[])
    env = gymnasium.make(sim.ENV_ID)
    try:
        train_offline(env, config, episodes, run_dir, preset=preset,
                      checkpoint_every=checkpoint_every, progress=progress,
                      prior=prior_episodes)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    finally:
        env.close()
    run = load_run(run_dir)
    plot_run(run, run_dir / "learning_curve.png")
    tail = run.success[-20:]
    typer.echo(
        f"{run_dir}: {len(run.returns)} episodes, mean return {run.returns.mean():.1f}, "
        f"last-20 success {100 * tail.mean():.0f}%, MF episodes {100 * run.is_mf.mean():.0f}%"
    )


def _parse_overrides(items: list[str]) -> dict[str, object]:
    """KEY=VALUE pairs; VALUE is read as JSON (numbers, lists, true/false), else as text."""
    parsed: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        parsed[key] = tuple(value) if isinstance(value, list) else value
    return parsed


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories written by `dclaw train`.")],
    out: Annotated[Path, typer.Option(help="Where to write table.md and comparison.png.")] = Path(
        "runs/report"
    ),
) -> None:
    """Table-1-style summary (mean return over training, 95% CI over seeds) and Fig. 2/3 plots."""
    from rich.console import Console
    from rich.markdown import Markdown

    from learner.report import (
        calibration_table,
        differences,
        differences_table,
        gate_calibration,
        load_run,
        markdown_table,
        per_seed,
        per_seed_table,
        plot_comparison,
        policy_outcomes,
        policy_outcomes_table,
        posterior_check,
        posterior_check_table,
        summarize,
    )

    missing = [str(r) for r in runs if not (r / "episodes.jsonl").exists()]
    if missing:
        raise typer.BadParameter(f"no episodes.jsonl in {', '.join(missing)}", param_hint="RUNS")
    loaded = [load_run(r) for r in runs]
    n, rows = summarize(loaded)
    table = markdown_table(n, rows) + "\n\n" + per_seed_table(per_seed(loaded, n))
    if diffs := differences(loaded, n):
        table += "\n\n" + differences_table(diffs)
    if outcomes := policy_outcomes(loaded, n):
        table += "\n\n" + policy_outcomes_table(outcomes, n)
    if calibration := gate_calibration(loaded, n):
        table += "\n\n" + calibration_table(calibration)
    if checks := posterior_check(loaded, n):
        table += "\n\n" + posterior_check_table(checks)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    plot_comparison(loaded, n, out / "comparison.png")
    Console().print(Markdown(table))
    typer.echo(f"wrote {out / 'table.md'} and {out / 'comparison.png'}")


# -- the learner service (server/, migrations/) ------------------------------------------------
def _refused(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def _quiet_migrations() -> None:
    # The service checks the schema at start and on every /readyz; alembic logs INFO each time.
    logging.getLogger("alembic").setLevel(logging.WARNING)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: DCLAW_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: DCLAW_PORT).")] = None,
    trainer: Annotated[
        bool | None,
        typer.Option("--trainer/--no-trainer",
                     help="Run a trainer process beside the API (default: DCLAW_TRAINER)."),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="API processes (settings then come from the environment).")
    ] = 1,
) -> None:
    """The learner service: REST API under /api/v1 and, unless --no-trainer, trainers.

    Settings come from DCLAW_* variables and .env (DCLAW_DATABASE_URL, DCLAW_ADMIN_TOKEN,
    DCLAW_RUNNER_TOKEN, DCLAW_DEV...). The database must be at the newest migration:
    `dclaw db upgrade` first.
    """
    _quiet_migrations()
    from server.service import StartupRefused, load_settings
    from server.service import serve as run_service

    try:
        settings = load_settings(host=host, port=port, trainer=trainer)
        run_service(settings, access_log=access_log, workers=workers)
    except StartupRefused as exc:
        raise _refused(exc) from exc


@app.command()
def trainer(
    slots: Annotated[
        int | None, typer.Option(min=1, help="Runs trained at once (default: DCLAW_TRAINER_SLOTS).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="This trainer's name in leases (default: host-pid).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port.")
    ] = None,
) -> None:
    """Trainers alone, e.g. on a second GPU box against the service's PostgreSQL."""
    _quiet_migrations()
    from server.service import StartupRefused, load_settings, run_trainer

    try:
        settings = load_settings(trainer_slots=slots, trainer_name=name)
        run_trainer(settings, metrics_port=metrics_port)
    except StartupRefused as exc:
        raise _refused(exc) from exc


db_app = typer.Typer(help="The service's database schema (Alembic migrations in migrations/).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")
DatabaseUrl = Annotated[
    str | None, typer.Option(help="SQLAlchemy URL (default: DCLAW_DATABASE_URL).")
]


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    database_url: DatabaseUrl = None,
) -> None:
    """Migrates the database up to the newest (or the given) revision."""
    from server.service import db_upgrade as upgrade

    typer.echo(f"database at revision {upgrade(revision, database_url)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Migrates the database down (base: drops every table of the service)."""
    from server.service import db_downgrade as downgrade

    typer.echo(f"database at revision {downgrade(revision, database_url)}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Shows the database's revision and the newest one."""
    from server.service import db_current as current

    url, revision, head = current(database_url)
    state = "up to date" if revision == head else "behind: run `dclaw db upgrade`"
    typer.echo(f"{url}: revision {revision}, newest {head} ({state})")


# -- the Dynamixel bus emulator (sim/bus_emulator.py) ------------------------------------------
@app.command()
def emulate(
    baud: Annotated[int, typer.Option(help="Bus rate of the wire-time model (bit/s).")] = 1_000_000,
    model: Annotated[int, typer.Option(help="Model number of every motor (1030: XM430-W210, "
                                            "1020: XM430-W350, 1000/1010: XH430-W, "
                                            "1040/1050: XH430-V).")] = 1030,
    calibration: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="Calibration TOML, as for `dclaw run`.")] = None,
    guide: Annotated[bool, typer.Option("--guide/--no-guide",
                                        help="Add the guide motor (ID 60).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the drop/corrupt faults.")] = 0,
    return_delay: Annotated[int, typer.Option(
        min=0, max=254, help="Return Delay Time (9) at start, 2 us units (factory: 250).")] = 0,
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", help="A fault from the start, as on stdin without `fault`, e.g. "
                        "--fault 'drop 0.3' --fault 'stuck 31'; repeatable.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose",
                                          help="Log every packet (hex) to stderr.")] = False,
    quit_on_eof: Annotated[bool, typer.Option(
        "--quit-on-eof", help="Exit when stdin ends (a parent process died).")] = False,
    realtime_priority: Annotated[int | None, typer.Option(
        min=1, max=99, help="Serve the bus at this SCHED_FIFO priority (Linux), so replies are "
                            "not late behind other work, as real servos never are.")] = None,
) -> None:
    """Serve a Dynamixel Protocol 2.0 bus on a pty: its motors are the MuJoCo D'Claw's joints.

    Prints `port: /dev/pts/N`, then serves until Ctrl-C/SIGTERM. Motors: 10-12,
    20-22, 30-32 (claw), 50 (valve), 60 (--guide). Replies take their wire time.
    Stdin lines inject faults; each is answered `ok ...` or `error: ...`:

      fault drop P          drop that fraction (0..1) of replies
      fault corrupt P       spoil the CRC of that fraction of replies
      fault delay MS        replies to each instruction start MS ms later
      fault hw_error ID BIT latch BIT (0..7, input_voltage, overheating,
                            encoder, electrical_shock, overload), torque off
      fault overheat ID     temperature over its limit: bit 2, torque off
      fault stuck ID        joint held; current grows as the goal moves
      fault current ID MA   present current reads MA milliamps
      fault silent ID       the motor no longer answers
      clear                 remove all faults (a latched error needs reboot)
      status                print one JSON line: motors, valve, faults
      help | quit
    """
    if verbose:
        logging.getLogger("sim.bus_emulator").setLevel(logging.DEBUG)
    from sim.bus_emulator import BusEmulator, EmulatorConfig, serve
    from sim.fault_commands import CommandError, execute, handle_line

    config = EmulatorConfig(baud=baud, model_number=model, calibration=calibration, guide=guide,
                            seed=seed, return_delay=return_delay)
    try:
        emulator = BusEmulator(config)
    except ValueError as exc:
        raise _refused(exc) from exc
    for spec in fault or []:
        words = spec.split()
        try:
            execute(emulator, words if words[:1] == ["fault"] else ["fault", *words])
        except CommandError as exc:
            raise typer.BadParameter(str(exc), param_hint="--fault") from exc

    def print_line(line: str) -> None:
        print(line, flush=True)

    if realtime_priority is not None:
        from dclaw.realtime import set_realtime_priority

        problem = set_realtime_priority(realtime_priority)
        print(problem or f"serving at real-time priority {realtime_priority} (SCHED_FIFO)",
              file=sys.stderr, flush=True)
    serve(emulator, print_line, lambda line: handle_line(emulator, line, print_line),
          quit_on_eof=quit_on_eof)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
