"""Helpers of the service tests: tokens, settings, a run, stored decisions, episode bodies."""

from __future__ import annotations

import hashlib

import numpy as np
import sqlalchemy as sa
from fastapi.testclient import TestClient
from live_service import ADMIN, FAST_OVERRIDES, RUNNER

from server.db import transaction
from server.repository import learning
from server.settings import Settings

ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
RUNNER_AUTH = {"Authorization": f"Bearer {RUNNER}"}


def pg_schema_url(base: str, schema: str) -> str:
    url = sa.engine.make_url(Settings(database_url=base, dev=True).database_url)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


def make_settings(url: str, **overrides) -> Settings:
    values = {"database_url": url, "admin_token": ADMIN, "runner_token": RUNNER, "dev": False,
              "trainer": False, "trainer_name": "test-trainer", "torch_threads": 1, **overrides}
    return Settings(_env_file=None, **values)


def create_run(client: TestClient, name: str = "r1", start: bool = True, **fields) -> dict:
    body = {"name": name, "algorithm": "unified", "preset": "cpu-small", "mode": "sync",
            "overrides": dict(FAST_OVERRIDES), **fields}
    response = client.post("/api/v1/runs", json=body, headers=ADMIN_AUTH)
    assert response.status_code == 201, response.text
    run = response.json()
    if start:
        assert client.post(f"/api/v1/runs/{run['id']}/start", headers=ADMIN_AUTH).is_success
    return run


def store_decision(factory, run_id: int, *, kind: str = "mf", version: int = 0,
                   episodes_seen: int = 0) -> int:
    """Plays the trainer: a policy document (dummy bytes) and a decision that picks it."""
    with transaction(factory) as session:
        if learning.snapshot_sha256(session, run_id=run_id, kind=kind, version=version) is None:
            data = f"policy {run_id} {kind} {version}".encode()
            learning.add_snapshot(session, run_id=run_id, kind=kind, version=version, data=data,
                                  sha256=hashlib.sha256(data).hexdigest(), header={},
                                  trainer="test")
        record = {"choice": kind, "reason": "warm-up", "mf_version": version if kind == "mf"
                  else 0, "mb_version": version if kind == "mb" else 0}
        return learning.add_decision(session, run_id=run_id, episodes_seen=episodes_seen,
                                     record=record, trainer="test").id


def episode_body(*, runner: str = "robot-1", seq: int = 0, decision_id: int, kind: str = "mf",
                 version: int = 0, steps: int = 40, seed: int | None = None) -> dict:
    rng = np.random.default_rng(seq if seed is None else seed)
    return {
        "runner": runner,
        "seq": seq,
        "policy_kind": kind,
        "policy_version": version,
        "decision_id": decision_id,
        "observations": rng.normal(size=(steps + 1, 21)).round(4).tolist(),
        "actions": rng.uniform(-1, 1, size=(steps, 9)).round(4).tolist(),
        "rewards": rng.normal(size=steps).round(4).tolist(),
        "timestamps": (np.arange(steps + 1) * 0.1).round(3).tolist(),
        "timing": {"period_mean_s": 0.1, "missed_deadlines": 0.0},
    }


def upload(client: TestClient, run_id: int, body: dict, key: str | None = None, **kwargs):
    headers = {**RUNNER_AUTH, "Idempotency-Key": key or f"key-{body['runner']}-{body['seq']}"}
    return client.post(f"/api/v1/runs/{run_id}/episodes", json=body, headers=headers, **kwargs)
