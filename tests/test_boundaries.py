"""DESIGN.md's "never imports" column, checked on the source (every import, nested ones too)
and on a fresh interpreter (what importing the light parts actually loads)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

NEVER = {
    "robot": {"torch", "fastapi", "sqlalchemy", "server", "learner", "mujoco"},
    "sim": {"torch", "fastapi", "sqlalchemy", "server", "learner"},
    "learner": {"fastapi", "sqlalchemy", "server"},
    "dclaw": {"torch", "fastapi", "sqlalchemy", "mujoco"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(NEVER))
def test_package_never_imports(package):
    offenders = {
        str(f.relative_to(REPO)): sorted(imported_roots(f) & NEVER[package])
        for f in (REPO / package).rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{package}/ must not import {sorted(NEVER[package])}: {offenders}"


def test_light_core_loads_no_heavy_module():
    """The runner's side: the task and the CLI load neither torch nor mujoco."""
    code = (
        "import sys, dclaw.task, dclaw.cli, robot\n"
        "heavy = {'torch', 'mujoco', 'fastapi', 'sqlalchemy'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
