"""The `dclaw` command. Each subcommand imports its part lazily, so the runner needs no torch."""

from __future__ import annotations

import logging
import os
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
