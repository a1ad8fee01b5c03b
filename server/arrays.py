"""Arrays in binary columns: float32 `.npy` bytes, shape checked on the way in and out."""

from __future__ import annotations

import io

import numpy as np


class ArrayShapeError(ValueError):
    """An array that is not the float32 shape a column holds."""


def encode(array: np.ndarray, shape: tuple[int, ...], name: str) -> bytes:
    """float32 `.npy` bytes of `array`, which must have exactly `shape` and finite values."""
    array = np.asarray(array, dtype=np.float32)
    if array.shape != shape:
        raise ArrayShapeError(f"{name} has shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        raise ArrayShapeError(f"{name} holds NaN or infinite values")
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode(data: bytes, shape: tuple[int, ...] | None = None, name: str = "array") -> np.ndarray:
    array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    if array.dtype != np.float32 or (shape is not None and array.shape != shape):
        raise ArrayShapeError(f"stored {name} is {array.dtype}{array.shape}, expected {shape}")
    return array
