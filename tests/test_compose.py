"""docker-compose.yml, checked by parsing (no Docker engine runs here)."""

import re
from pathlib import Path

import typer
import yaml

from dclaw.cli import app

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _interpolate(arg: str) -> str:
    """Compose's `${NAME:-default}`, with the default (what an unset variable gives)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", arg)


def test_every_dclaw_command_in_compose_exists_in_the_cli():
    group = typer.main.get_command(app)
    ctx = group.make_context("dclaw", [], resilient_parsing=True)
    checked = 0
    for name, service in _compose()["services"].items():
        cmd = service.get("command")
        if not cmd or cmd[0] != "dclaw":
            continue
        sub = group.get_command(ctx, cmd[1])
        assert sub is not None, f"service {name}: `dclaw {cmd[1]}` is not a CLI command"
        # Options must parse as the CLI defines them.
        sub.make_context(cmd[1], [_interpolate(a) for a in cmd[2:]], parent=ctx)
        checked += 1
    assert checked >= 1


def test_every_setting_in_compose_is_read_by_the_settings_object():
    from server.settings import Settings

    fields = {name.upper() for name in Settings.model_fields}
    compose = _compose()
    passed = set()
    for service in compose["services"].values():
        passed |= {k for k in (service.get("environment") or {}) if k.startswith("DCLAW_")}
    assert passed, "compose passes no DCLAW_ settings"
    unknown = {k for k in passed if k.removeprefix("DCLAW_") not in fields}
    assert not unknown, f"settings the service does not read: {sorted(unknown)}"


def test_images_build_with_the_readme_install():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "make install" in dockerfile
    assert "make demo" in (REPO / "README.md").read_text()
    for name, service in _compose()["services"].items():
        if "build" in service:
            assert service["build"] in (".", {"context": "."}), name
        else:
            assert service["image"] in ("dclaw-unified-rl:latest", "postgres:16"), name
