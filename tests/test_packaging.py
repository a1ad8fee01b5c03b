"""The robot side installs light: the core and the `robot` extra bring no torch/FastAPI/SQL."""

import re
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "fastapi", "sqlalchemy", "alembic", "uvicorn", "mujoco"}


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_runner_install_is_light():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runner = _names(project["dependencies"]) | _names(project["optional-dependencies"]["robot"])
    assert "dynamixel-sdk" in runner
    assert not runner & HEAVY, runner & HEAVY


def test_learner_side_admits_the_local_torch_build():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (torch_req,) = [r for r in project["optional-dependencies"]["learner"] if r.startswith("torch")]
    assert "2.13.0" in SpecifierSet(torch_req.removeprefix("torch"))


def test_console_command_is_dclaw():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"dclaw": "dclaw.cli:main"}
