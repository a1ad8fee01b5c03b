"""Save and restore a whole learner, so that training resumes exactly where it stopped.

A checkpoint holds the config, every network, optimiser and normaliser, the buffer, counters,
policy versions, the gate's recent choices, the agent's sampling generator and the global RNG
states of torch (CPU and CUDA) and numpy. It contains only tensors and plain Python values, so it
loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from learner.agent import UnifiedAgent
from learner.config import config_from_dict

CHECKPOINT_VERSION = 1


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))


def save_checkpoint(agent: UnifiedAgent, file: str | Path | BinaryIO) -> None:
    """Writes the agent's full state (and the global RNG states) to a path or binary file."""
    torch.save(
        {"checkpoint_version": CHECKPOINT_VERSION, "agent": agent.state_dict(),
         "rng": _rng_states()},
        file,
    )


def load_checkpoint(
    file: str | Path | BinaryIO, device: str | None = None, restore_rng: bool = True
) -> UnifiedAgent:
    """Rebuilds the agent saved by `save_checkpoint` (optionally on another device) and, unless
    told otherwise, restores the global RNG states so the next updates equal an unbroken run."""
    payload = torch.load(file, map_location="cpu", weights_only=True)
    if payload.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise ValueError(f"unsupported checkpoint version {payload.get('checkpoint_version')}")
    state = payload["agent"]
    config = config_from_dict(state["config"])
    if device is not None:
        config = config.__class__(**{**config.__dict__, "device": device})
    agent = UnifiedAgent(config)
    agent.load_state_dict(state)
    if restore_rng:
        _set_rng_states(payload["rng"])
    return agent


def checkpoint_bytes(agent: UnifiedAgent) -> bytes:
    """The checkpoint as bytes (for a database column)."""
    buffer = io.BytesIO()
    save_checkpoint(agent, buffer)
    return buffer.getvalue()


def agent_from_bytes(data: bytes, device: str | None = None) -> UnifiedAgent:
    return load_checkpoint(io.BytesIO(data), device=device)
