"""Runs over HTTP (in-process client) on SQLite and PostgreSQL: create, list, get, start, stop,
delete; bearer-token auth; bad input answered with a 4xx and a message."""

import json
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from server_testkit import ADMIN_AUTH, FAST_OVERRIDES, RUNNER_AUTH, create_run, make_settings

from server.app import create_app
from server.db import transaction
from server.repository.leases import claim_run


def test_create_list_get(client):
    run = create_run(client, name="turn-1", start=False)
    assert run["status"] == "created" and run["mode"] == "sync"
    assert run["config"]["warmup_episodes"] == 2 and run["config"]["algorithm"] == "unified"
    assert run["config"]["gate"]["num_masks"] == 8
    second = create_run(client, name="turn-2", start=False, algorithm="sac", mode="async")
    listed = client.get("/api/v1/runs").json()
    assert [r["name"] for r in listed] == ["turn-1", "turn-2"]
    assert client.get("/api/v1/runs", params={"limit": 1, "offset": 1}).json()[0]["id"] == \
        second["id"]
    got = client.get(f"/api/v1/runs/{second['id']}").json()
    assert got["algorithm"] == "sac" and got["mode"] == "async" and got["episodes"] == 0


def test_start_stop_delete(client, factory):
    run = create_run(client, start=False)
    path = f"/api/v1/runs/{run['id']}"
    assert client.post(f"{path}/stop", headers=ADMIN_AUTH).status_code == 409  # never started
    assert client.post(f"{path}/start", headers=ADMIN_AUTH).json()["status"] == "running"
    assert client.post(f"{path}/start", headers=ADMIN_AUTH).json()["status"] == "running"
    deleted = client.delete(path, headers=ADMIN_AUTH)
    assert deleted.status_code == 409 and "stop it" in deleted.json()["detail"]
    # A live trainer holds the run: stop asks it to finish (stopping), it sets stopped.
    with transaction(factory) as session:
        assert claim_run(session, owner="t", now=time.time(), ttl_s=30).run_id == run["id"]
    stopping = client.post(f"{path}/stop", headers=ADMIN_AUTH).json()
    assert stopping["status"] == "stopping" and stopping["trainer"]["owner"] == "t"
    assert client.delete(path, headers=ADMIN_AUTH).status_code == 409
    # start again cancels the stop; with no live trainer, stop is immediate.
    assert client.post(f"{path}/start", headers=ADMIN_AUTH).json()["status"] == "running"
    with transaction(factory) as session:
        session.execute(sa.text("UPDATE trainer_leases SET expires_at = 0"))  # trainer died
    assert client.post(f"{path}/stop", headers=ADMIN_AUTH).json()["status"] == "stopped"
    assert client.delete(path, headers=ADMIN_AUTH).status_code == 204
    assert client.get(path).status_code == 404
    assert client.delete(path, headers=ADMIN_AUTH).status_code == 404


def test_auth(client):
    body = {"name": "x", "preset": "cpu-small"}
    missing = client.post("/api/v1/runs", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/api/v1/runs", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert client.post("/api/v1/runs", json=body, headers=RUNNER_AUTH).status_code == 403
    run = create_run(client, start=False)
    for path in (f"/api/v1/runs/{run['id']}/start", f"/api/v1/runs/{run['id']}/stop"):
        assert client.post(path).status_code == 401
        assert client.post(path, headers=RUNNER_AUTH).status_code == 403
    assert client.delete(f"/api/v1/runs/{run['id']}", headers=RUNNER_AUTH).status_code == 403
    assignment = {"runner": "r", "seq": 0}
    assert client.post(f"/api/v1/runs/{run['id']}/assignments", json=assignment).status_code \
        == 401
    # Read-only endpoints are open by default.
    for path in ("/api/v1/runs", f"/api/v1/runs/{run['id']}", f"/api/v1/runs/{run['id']}/gate",
                 f"/api/v1/runs/{run['id']}/episodes", f"/api/v1/runs/{run['id']}/metrics",
                 f"/api/v1/runs/{run['id']}/runners", f"/api/v1/runs/{run['id']}/policies",
                 "/metrics", "/healthz", "/readyz"):
        assert client.get(path).status_code == 200, path


def test_reads_can_require_a_token(db_url):
    with TestClient(create_app(make_settings(db_url, read_requires_token=True))) as client:
        assert client.get("/api/v1/runs").status_code == 401
        assert client.get("/api/v1/runs", headers={"Authorization": "Bearer x"}).status_code \
            == 403
        assert client.get("/api/v1/runs", headers=RUNNER_AUTH).status_code == 200
        assert client.get("/metrics", headers=ADMIN_AUTH).status_code == 200
        assert client.get("/healthz").status_code == 200  # liveness stays open


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "algorithm": "ppo"}, "algorithm"),
        ({"name": "x", "preset": "huge"}, "unknown preset"),
        ({"name": "x", "mode": "fast"}, "mode"),
        ({"name": ""}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "overrides": {"no_such_field": 1}}, "no_such_field"),
        ({"name": "x", "overrides": {"sac__no_such": 1}}, "no_such"),
        ({"name": "x", "overrides": {"warmup_episodes": "many"}}, "warmup_episodes"),
        ({"name": "x", "overrides": {"sac__actor_hidden": [64, "wide"]}}, "actor_hidden"),
        ({"name": "x", "overrides": {"gate__num_masks": -3}}, "gate__num_masks"),
        ({"name": "x", "overrides": {"obs_dim": 5}}, "obs_dim"),
        ({"name": "x", "overrides": {"device": "cuda"}}, "device"),
        ({"name": "x", "overrides": {"gamma": float("nan")}}, "NaN"),
        ({"name": "x", "overrides": {"sac__alpha": float("inf")}}, "NaN or infinite"),
        ({"name": "bad\x00name"}, "name"),
        ({"name": "x", "overrides": {"seed": "\x00"}}, "NUL"),
    ],
)
def test_bad_run_bodies(client, body, message):
    text = json.dumps({"preset": "cpu-small", **body})  # NaN and Infinity as Python writes them
    response = client.post("/api/v1/runs", content=text,
                           headers={**ADMIN_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert message in response.text
    assert client.get("/api/v1/runs").json() == []


def test_duplicate_name_and_unknown_ids(client):
    create_run(client, name="same", start=False)
    again = client.post("/api/v1/runs", json={"name": "same", "preset": "cpu-small",
                                              "overrides": FAST_OVERRIDES}, headers=ADMIN_AUTH)
    assert again.status_code == 409 and "exists" in again.json()["detail"]
    assert client.get("/api/v1/runs/999").status_code == 404
    assert "no run with id 999" in client.get("/api/v1/runs/999").json()["detail"]
    for path in ("/api/v1/runs/abc", "/api/v1/runs/0", f"/api/v1/runs/{2**70}"):
        assert client.get(path).status_code == 422
    assert client.post("/api/v1/runs/999/start", headers=ADMIN_AUTH).status_code == 404
    assert client.get("/api/v1/runs", params={"limit": 100000}).status_code == 422
    malformed = client.post("/api/v1/runs", content=b"{not json", headers={
        **ADMIN_AUTH, "Content-Type": "application/json"})
    assert malformed.status_code == 422


def test_cors_closed_by_default(db_url):
    preflight = {"Origin": "https://lab.example", "Access-Control-Request-Method": "GET"}
    with TestClient(create_app(make_settings(db_url))) as closed:
        response = closed.get("/api/v1/runs", headers={"Origin": "https://lab.example"})
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-origin" not in closed.options(
            "/api/v1/runs", headers=preflight).headers
    settings = make_settings(db_url, cors_origins=["https://lab.example"])
    with TestClient(create_app(settings)) as opened:
        allowed = opened.options("/api/v1/runs", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://lab.example"
        other = opened.options("/api/v1/runs", headers={**preflight, "Origin": "https://evil"})
        assert "access-control-allow-origin" not in other.headers
