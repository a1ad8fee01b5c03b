"""Assignments, policy downloads and heartbeats over HTTP on SQLite and PostgreSQL, with the
trainer's writes played by the test (no training here: see test_trainer.py and test_e2e.py)."""

import hashlib

from server_testkit import ADMIN_AUTH, RUNNER_AUTH, create_run, episode_body, store_decision, upload

from server.db import transaction
from server.repository import learning
from server.repository.episodes import mark_learned


def _assign(client, run_id, runner="robot-1", seq=0):
    return client.post(f"/api/v1/runs/{run_id}/assignments", json={"runner": runner, "seq": seq},
                       headers=RUNNER_AUTH)


def test_refused_unless_running(client):
    run = create_run(client, start=False)
    refused = _assign(client, run["id"])
    assert refused.status_code == 409
    assert refused.json()["status"] == "refused" and "created" in refused.json()["detail"]
    client.post(f"/api/v1/runs/{run['id']}/start", headers=ADMIN_AUTH)
    client.post(f"/api/v1/runs/{run['id']}/stop", headers=ADMIN_AUTH)
    assert _assign(client, run["id"]).json()["status"] == "refused"
    assert _assign(client, 999).status_code == 404


def test_not_ready_until_a_decision_exists(client, factory):
    run = create_run(client)
    waiting = _assign(client, run["id"])
    assert waiting.status_code == 503
    assert waiting.json()["status"] == "not_ready" and waiting.json()["retry_after_ms"] == 200
    assert waiting.headers["retry-after"] == "1"
    decision = store_decision(factory, run["id"])
    ready = _assign(client, run["id"])
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["decision_id"] == decision and body["policy_kind"] == "mf"
    assert body["policy_version"] == 0 and body["episode_steps"] == 40
    assert body["deterministic"] is False
    document = client.get(body["policy_url"])
    assert document.status_code == 200
    assert document.headers["content-type"] == "application/octet-stream"
    assert document.headers["x-policy-sha256"] == body["sha256"]
    assert hashlib.sha256(document.content).hexdigest() == body["sha256"]


def test_sync_waits_for_the_runners_previous_episode(client, factory):
    run = create_run(client)
    first = store_decision(factory, run["id"])
    assert upload(client, run["id"], episode_body(decision_id=first)).status_code == 201
    waiting = _assign(client, run["id"], seq=1)
    assert waiting.status_code == 503 and "not learnt from 1 earlier" in waiting.json()["detail"]
    episode_id = client.get(f"/api/v1/runs/{run['id']}/episodes").json()["items"][0]["id"]
    with transaction(factory) as session:
        mark_learned(session, episode_id=episode_id, train_index=0)
    assert _assign(client, run["id"], seq=1).status_code == 503  # learnt, no decision after it
    second = store_decision(factory, run["id"], version=1, episodes_seen=1)
    ready = _assign(client, run["id"], seq=1).json()
    assert ready["decision_id"] == second and ready["policy_version"] == 1
    assert ready["episodes_seen"] == 1
    # Another runner's first episode needs nothing learnt: the newest decision.
    assert _assign(client, run["id"], runner="robot-2", seq=0).json()["decision_id"] == second
    runners = {r["name"]: r for r in client.get(f"/api/v1/runs/{run['id']}/runners").json()}
    assert runners["robot-1"]["status"] == "assigned" and runners["robot-1"]["last_seq"] == 1


def test_async_gets_the_newest_decision(client, factory):
    run = create_run(client, mode="async")
    first = store_decision(factory, run["id"])
    upload(client, run["id"], episode_body(decision_id=first))
    assert _assign(client, run["id"], seq=1).json()["decision_id"] == first  # nothing learnt
    newer = store_decision(factory, run["id"], kind="mb", version=3, episodes_seen=0)
    got = _assign(client, run["id"], seq=1).json()
    assert got["decision_id"] == newer and got["policy_kind"] == "mb"
    assert got["policy_version"] == 3 and got["policy_url"].endswith("/policies/3?kind=mb")


def test_bad_assignment_bodies(client, factory):
    run = create_run(client)
    store_decision(factory, run["id"])
    url = f"/api/v1/runs/{run['id']}/assignments"
    for body in ({"runner": "r1", "seq": -1}, {"seq": 0}, {"runner": "", "seq": 0},
                 {"runner": "r1", "seq": "next"}, {"runner": "r1", "seq": 0, "x": 1},
                 {"runner": "r1", "seq": 2**70}):
        response = client.post(url, json=body, headers=RUNNER_AUTH)
        assert response.status_code == 422, body


def test_policy_downloads_and_metadata(client, factory):
    run = create_run(client)
    store_decision(factory, run["id"])
    store_decision(factory, run["id"], kind="mb", version=0)
    base = f"/api/v1/runs/{run['id']}/policies"
    listed = client.get(base).json()
    assert [(p["kind"], p["version"]) for p in listed] == [("mb", 0), ("mf", 0)]
    assert [p["kind"] for p in client.get(base, params={"kind": "mf"}).json()] == ["mf"]
    meta = client.get(f"{base}/0/meta", params={"kind": "mf"}).json()
    assert meta["sha256"] == listed[1]["sha256"] and meta["size"] > 0
    missing = client.get(f"{base}/5", params={"kind": "mf"})
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"run {run['id']} has no mf policy version 5 (newest: 0)"
    assert client.get(f"{base}/0").status_code == 422  # kind is required
    assert client.get(f"{base}/0", params={"kind": "ppo"}).status_code == 422
    assert client.get(f"{base}/-1", params={"kind": "mf"}).status_code == 422
    assert client.get("/api/v1/runs/999/policies/0", params={"kind": "mf"}).status_code == 404


def test_heartbeats(client):
    run = create_run(client)
    url = f"/api/v1/runs/{run['id']}/runners/robot-7/heartbeat"
    beat = client.post(url, json={"status": "running", "seq": 4, "details": {"temp_c": 41}},
                       headers=RUNNER_AUTH)
    assert beat.status_code == 200, beat.text
    assert beat.json()["status"] == "running" and beat.json()["details"] == {"temp_c": 41}
    again = client.post(url, json={"status": "fault"}, headers=RUNNER_AUTH).json()
    assert again["status"] == "fault" and again["last_seq"] == 4
    assert again["details"] == {"temp_c": 41}
    assert again["first_seen_at"] == beat.json()["first_seen_at"]
    assert client.post(url, json={"status": "Not OK"}, headers=RUNNER_AUTH).status_code == 422
    nan = client.post(url, content='{"status": "idle", "details": {"t": NaN}}',
                      headers={**RUNNER_AUTH, "Content-Type": "application/json"})
    assert nan.status_code == 422 and "NaN" in nan.text
    assert client.post(url, json={"status": "idle"}).status_code == 401
    bad_name = f"/api/v1/runs/{run['id']}/runners/{'x' * 200}/heartbeat"
    assert client.post(bad_name, json={"status": "idle"}, headers=RUNNER_AUTH).status_code == 422
    assert client.post("/api/v1/runs/999/runners/r/heartbeat", json={"status": "idle"},
                       headers=RUNNER_AUTH).status_code == 404
    assert [r["name"] for r in client.get(f"/api/v1/runs/{run['id']}/runners").json()] == [
        "robot-7"]


def test_old_policy_documents_are_pruned_but_late_uploads_naming_them_are_kept(client, factory):
    run = create_run(client)
    base = f"/api/v1/runs/{run['id']}/policies"
    with transaction(factory) as session:
        for version in range(5):
            data = f"doc {version}".encode()
            learning.add_snapshot(session, run_id=run["id"], kind="mf", version=version,
                                  data=data, sha256=hashlib.sha256(data).hexdigest(),
                                  header={}, trainer="test", keep=2)
    decision = store_decision(factory, run["id"], kind="mf", version=4)
    # Versions 3 and 4 keep their documents; 0-2 keep their records only.
    assert client.get(f"{base}/4", params={"kind": "mf"}).content == b"doc 4"
    assert client.get(f"{base}/3", params={"kind": "mf"}).content == b"doc 3"
    gone = client.get(f"{base}/1", params={"kind": "mf"})
    assert gone.status_code == 410
    assert "pruned" in gone.json()["detail"] and "newest: 4" in gone.json()["detail"]
    meta = client.get(f"{base}/1/meta", params={"kind": "mf"})
    assert meta.status_code == 200 and meta.json()["sha256"] == hashlib.sha256(b"doc 1").hexdigest()
    # A runner that spooled an episode run with version 0 still gets it stored.
    late = upload(client, run["id"], episode_body(decision_id=decision, version=0))
    assert late.status_code == 201, late.text
