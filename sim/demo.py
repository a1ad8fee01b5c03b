"""`dclaw sim`: roll a fixed policy on the simulator and report returns."""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
from rich.console import Console
from rich.table import Table

from sim import ENV_ID
from sim.env import RenderUnavailableError


def rollout(env: gymnasium.Env, policy: str, rng: np.random.Generator, frames: list | None = None):
    """One episode; returns (return, success at the last step, valve travel in rad)."""
    obs, _ = env.reset()
    total, info, done = 0.0, {}, False
    while not done:
        if policy == "random":
            action = rng.uniform(-1.0, 1.0, size=env.action_space.shape).astype(np.float32)
        else:
            action = np.zeros(env.action_space.shape, dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        done = terminated or truncated
        if frames is not None:
            frames.append(env.render())
    return total, bool(info.get("success", False)), float(np.arctan2(obs[10], obs[9]))


def run_demo(policy: str, episodes: int, seed: int, render_dir: Path | None = None) -> list[float]:
    console = Console()
    env = gymnasium.make(ENV_ID, render_mode="rgb_array" if render_dir else None)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    table = Table(title=f"{ENV_ID}, {policy} policy, {episodes} episodes of 40 steps")
    for col in ("episode", "return", "success", "valve angle (rad)"):
        table.add_column(col, justify="right")
    returns = []
    try:
        for ep in range(episodes):
            frames = [] if (render_dir and ep == 0) else None
            if frames is not None:
                _check_render(env)
            ret, ok, angle = rollout(env, policy, rng, frames)
            returns.append(ret)
            table.add_row(str(ep), f"{ret:.1f}", "yes" if ok else "no", f"{angle:+.2f}")
            if frames:
                _write_frames(frames, render_dir)
                console.print(f"wrote {len(frames)} frames to {render_dir}")
    finally:
        env.close()
    table.add_section()
    table.add_row("mean", f"{np.mean(returns):.1f}", "", "")
    console.print(table)
    return returns


def _check_render(env: gymnasium.Env) -> None:
    env.reset()
    try:
        env.render()
    except RenderUnavailableError:
        raise
    except Exception as exc:
        raise RenderUnavailableError(f"rendering failed: {exc}") from exc


def _write_frames(frames: list[np.ndarray], out: Path) -> None:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(out / f"frame_{i:03d}.png")
