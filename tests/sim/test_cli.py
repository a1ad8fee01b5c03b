"""`dclaw sim` as a user runs it: the installed console script in a subprocess."""

import os
import subprocess

import pytest

from sim import env as sim_env


def test_dclaw_sim_prints_returns(dclaw_cmd):
    out = subprocess.run(
        [*dclaw_cmd, "sim", "--policy", "zero", "--episodes", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "DClawTurnFixed-v0" in out.stdout
    assert out.stdout.count("-733.1") >= 2  # two identical zero-policy episodes, and the mean


def test_dclaw_sim_rejects_bad_arguments(dclaw_cmd):
    out = subprocess.run(
        [*dclaw_cmd, "sim", "--episodes", "0"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "episodes" in out.stderr


def test_render_writes_frames_or_fails_clearly(dclaw_cmd, tmp_path):
    """Where an offscreen GL context exists we get 40 PNGs; where none does, a clear message."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL")}
    out = subprocess.run(
        [*dclaw_cmd, "sim", "--episodes", "1", "--render", str(tmp_path / "frames")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    if out.returncode == 0:
        frames = sorted((tmp_path / "frames").glob("*.png"))
        assert len(frames) == 40
        assert frames[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert out.returncode == 2, out.stderr
        assert "no offscreen OpenGL context" in out.stderr
        assert "Traceback" not in out.stderr


def test_renderer_failure_becomes_a_clear_error(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("mjr_makeContext failed")

    monkeypatch.setattr(sim_env.mujoco, "Renderer", broken)
    e = sim_env.DClawTurnFixedEnv(render_mode="rgb_array")
    e.reset(seed=0)
    with pytest.raises(sim_env.RenderUnavailableError, match="MUJOCO_GL=egl"):
        e.render()
