"""Exports a torch policy in the runner's wire format (see `robot/policy.py` for the format).

The document is a zip of `.npy` members written with fixed timestamps, so the same weights give
the same bytes and the same sha256.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any, NamedTuple

import numpy as np

from learner.networks import TanhGaussianPolicy
from robot.policy import FORMAT, FORMAT_VERSION, document_sha256, payload_sha256

KINDS = ("mf", "mb")
_EPOCH = (1980, 1, 1, 0, 0, 0)


class ExportedPolicy(NamedTuple):
    data: bytes  # the .npz document
    sha256: str  # of `data`: what the service advertises and the runner verifies
    header: dict[str, Any]


def export_policy(policy: TanhGaussianPolicy, kind: str, version: int) -> ExportedPolicy:
    """The policy's weights, parameterisation and header as one `.npz` document."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    arrays = policy.get_weights()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "version": int(version),
        "architecture": policy.architecture(),
        "arrays": sorted(arrays),
        "payload_sha256": payload_sha256(arrays),
    }
    members = {"header": np.array(json.dumps(header, sort_keys=True)), **arrays}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in ["header", *sorted(arrays)]:
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(members[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH), member.getvalue())
    data = buffer.getvalue()
    return ExportedPolicy(data, document_sha256(data), header)
