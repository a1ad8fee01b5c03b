"""Helpers of the runner tests: a policy document and a scripted learner service."""

from __future__ import annotations

import hashlib
import io
import json

import httpx
import numpy as np

from robot.client import LearnerClient
from robot.policy import FORMAT, FORMAT_VERSION, payload_sha256


def service_client(handler):
    """A client factory whose requests go to `handler` (an httpx MockTransport)."""
    transport = httpx.MockTransport(handler)
    return lambda: LearnerClient("http://learner", 1, "r", "tok", transport=transport)


def policy_document() -> bytes:
    rng = np.random.default_rng(0)
    arrays = {"hidden.0.weight": rng.normal(size=(8, 21)).astype(np.float32),
              "hidden.0.bias": np.zeros(8, np.float32),
              "mean.weight": rng.normal(size=(9, 8)).astype(np.float32),
              "mean.bias": np.zeros(9, np.float32), "std.weight": np.zeros((9, 8), np.float32),
              "std.bias": np.zeros(9, np.float32), "obs_mean": np.zeros(21, np.float32),
              "obs_std": np.ones(21, np.float32), "action_scale": np.ones(9, np.float32),
              "action_offset": np.zeros(9, np.float32)}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "mf", "version": 0,
              "architecture": {"obs_dim": 21, "act_dim": 9, "hidden": [8], "activation": "tanh",
                               "std": "softplus", "min_std": 1e-3},
              "arrays": sorted(arrays), "payload_sha256": payload_sha256(arrays)}
    out = io.BytesIO()
    np.savez(out, header=np.array(json.dumps(header)), **arrays)
    return out.getvalue()


def scripted_service(document: bytes, log: list):
    sha = hashlib.sha256(document).hexdigest()

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        log.append((request.method, path, json.loads(request.content) if request.content
                    else None))
        if path == "/api/v1/runs/1":
            return httpx.Response(200, json={"id": 1, "name": "t", "algorithm": "unified",
                                             "preset": "cpu-small", "mode": "sync",
                                             "status": "running"})
        if path.endswith("/runners"):
            return httpx.Response(200, json=[])
        if path.endswith("/assignments"):
            return httpx.Response(200, json={
                "run_id": 1, "policy_kind": "mf", "policy_version": 0, "sha256": sha,
                "policy_url": "/api/v1/runs/1/policies/0?kind=mf", "decision_id": 1,
                "deterministic": True, "episode_steps": 40, "episodes_seen": 0,
                "reason": "warm-up"})
        if "/policies/" in path:
            return httpx.Response(200, content=document)
        if path.endswith("/episodes"):
            return httpx.Response(201, json={"id": 1, "seq": 0})
        return httpx.Response(200 if path.endswith("heartbeat") else 201, json={})

    return handler
