"""The runner's policy: a numpy forward pass of an exported Tanh-Gaussian MLP (no torch here).

Wire format (written by `learner/export.py`): one `.npz` document holding

- `header`: a JSON string with `format` ("dclaw-policy"), `format_version`, `kind` ("mf"|"mb"),
  `version`, `architecture` (obs_dim, act_dim, hidden widths, activation "tanh", std
  parameterisation "softplus" or "sigmoid" with `sigma_max`, `min_std`), `arrays` (the names
  below) and `payload_sha256`;
- float32 arrays `hidden.{i}.weight` (out, in) and `hidden.{i}.bias`, `mean.weight/bias`,
  `std.weight/bias`, `obs_mean`, `obs_std`, `action_scale`, `action_offset`.

`payload_sha256` covers the arrays (`payload_sha256()` below); the service also advertises the
sha256 of the whole document, checked with `expected_sha256`.

The forward pass: x = (obs - obs_mean) / obs_std; x = tanh(W x + b) per hidden layer;
mean = W_m x + b_m; std = softplus(W_s x + b_s) (or sigma_max * sigmoid(.)) + min_std;
action = action_offset + action_scale * tanh(mean + std * noise), noise = 0 when deterministic.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np

FORMAT = "dclaw-policy"
FORMAT_VERSION = 1


class PolicyIntegrityError(ValueError):
    """The document does not match its sha256, or is not a policy document."""


def payload_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays in name order: name, dtype, shape and little-endian bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(name.encode())
        digest.update(f"|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def document_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class NumpyPolicy:
    """A Tanh-Gaussian MLP policy evaluated with numpy (float64 internally)."""

    def __init__(self, header: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.header = header
        arch = header["architecture"]
        self.kind: str = header["kind"]
        self.version: int = int(header["version"])
        self.obs_dim, self.act_dim = int(arch["obs_dim"]), int(arch["act_dim"])
        self.std_param: str = arch["std"]
        self.sigma_max = arch.get("sigma_max")
        self.min_std = float(arch["min_std"])
        a = {k: v.astype(np.float64) for k, v in arrays.items()}
        n_hidden = len(arch["hidden"])
        self.hidden = [(a[f"hidden.{i}.weight"], a[f"hidden.{i}.bias"]) for i in range(n_hidden)]
        self.mean_layer = (a["mean.weight"], a["mean.bias"])
        self.std_layer = (a["std.weight"], a["std.bias"])
        self.obs_mean, self.obs_std = a["obs_mean"], a["obs_std"]
        self.action_scale, self.action_offset = a["action_scale"], a["action_offset"]

    @classmethod
    def from_bytes(cls, data: bytes, expected_sha256: str | None = None) -> NumpyPolicy:
        """Loads a policy document, verifying the document's and the payload's sha256."""
        if expected_sha256 is not None and document_sha256(data) != expected_sha256.lower():
            raise PolicyIntegrityError("policy document does not match the expected sha256")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                header = json.loads(str(npz["header"]))
                arrays = {name: npz[name] for name in header["arrays"]}
        except (OSError, ValueError, KeyError) as exc:
            raise PolicyIntegrityError(f"not a readable policy document: {exc}") from exc
        if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
            raise PolicyIntegrityError(f"unsupported policy format {header.get('format')!r}")
        if payload_sha256(arrays) != header["payload_sha256"]:
            raise PolicyIntegrityError("policy weights do not match the header's payload_sha256")
        return cls(header, arrays)

    def distribution(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of the Gaussian before the tanh, for obs (..., obs_dim)."""
        x = (np.asarray(obs, dtype=np.float64) - self.obs_mean) / self.obs_std
        for weight, bias in self.hidden:
            x = np.tanh(x @ weight.T + bias)
        mean = x @ self.mean_layer[0].T + self.mean_layer[1]
        raw_std = x @ self.std_layer[0].T + self.std_layer[1]
        if self.std_param == "softplus":
            std = _softplus(raw_std)
        else:
            std = float(self.sigma_max) * _sigmoid(raw_std)
        return mean, std + self.min_std

    def sample(self, obs: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """The action for a given standard-normal `noise` (None: the deterministic action)."""
        mean, std = self.distribution(obs)
        pre_tanh = mean if noise is None else mean + std * noise
        return (self.action_offset + self.action_scale * np.tanh(pre_tanh)).astype(np.float32)

    def act(
        self,
        obs: np.ndarray,
        deterministic: bool = False,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Deterministic: tanh(mean) mapped by scale/offset. Stochastic: a tanh-Gaussian draw."""
        if deterministic:
            return self.sample(obs, None)
        rng = np.random.default_rng() if rng is None else rng
        shape = (*np.shape(obs)[:-1], self.act_dim)
        return self.sample(obs, rng.standard_normal(shape))
