"""Locates the D'Claw model files inside the installed `robel` wheel and makes them loadable.

ROBEL's XML files put an `<?xml?>` declaration after a licence comment, which MuJoCo 3+ rejects.
We mirror the asset tree into a per-user cache with the declarations stripped (meshes and
textures are symlinked), so nothing of ROBEL is copied into this repository.
`robel` itself is never imported: its `__init__` imports gym.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path

VALVE_MODEL = "dclaw/assets/dclaw3xh_valve3_v0.xml"
_ASSET_DIRS = ("robel-scenes", "dclaw/assets")
_XML_DECLARATION = re.compile(rb"<\?xml[^>]*\?>")


class AssetsNotFoundError(RuntimeError):
    """The `robel` wheel with the D'Claw model files is not installed."""


def robel_root() -> Path:
    """The directory of the installed `robel` package, found without importing it."""
    spec = importlib.util.find_spec("robel")
    if spec is None or not spec.submodule_search_locations:
        raise AssetsNotFoundError(
            "the D'Claw model files come from the robel wheel: "
            "run `pip install --no-deps robel==0.1.2` (or `make install`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    """Where the loadable copy lives: $DCLAW_CACHE_DIR, else the user cache dir + /dclaw."""
    if env := os.environ.get("DCLAW_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dclaw"


def _stamp(root: Path) -> str:
    version = importlib.metadata.version("robel")
    return hashlib.sha256(f"{version}:{root.resolve()}".encode()).hexdigest()[:12]


def model_path(model: str = VALVE_MODEL) -> Path:
    """Path of a loadable (declaration-stripped) copy of a ROBEL model file; built once."""
    root = robel_root()
    dest = cache_dir() / f"robel-assets-{_stamp(root)}"
    if not (dest / ".complete").exists():
        _mirror(root, dest)
    return dest / model


def _mirror(root: Path, dest: Path) -> None:
    for sub in _ASSET_DIRS:
        for src in (root / sub).rglob("*"):
            if src.is_dir():
                continue
            out = dest / src.relative_to(root)
            out.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix == ".xml":
                tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
                tmp.write_bytes(_XML_DECLARATION.sub(b"", src.read_bytes()))
                os.replace(tmp, out)  # atomic: concurrent first runs never see half a file
            elif not out.exists():
                with contextlib.suppress(FileExistsError):  # another process made it first
                    out.symlink_to(src)
    (dest / ".complete").touch()
