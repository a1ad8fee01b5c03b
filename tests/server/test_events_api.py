"""Runner events over HTTP on SQLite and PostgreSQL: a runner posts safety stops and other
reports with its token, readers page through them by kind and runner; every bad body is a 422.
Also the dashboard's aggregate reads: a run's episodes as chart columns, and run summaries."""

import json

import pytest
from server_testkit import ADMIN_AUTH, RUNNER_AUTH, create_run, episode_body, store_decision, upload

SAFETY_STOP = {
    "kind": "safety_stop",
    "message": "motor 21: temperature 81 °C above the limit 80 °C",
    "details": {"cause": "temperature", "motor": 21, "value": 81.0, "limit": 80.0},
}


def _post(client, run_id, body, runner="robot-1", headers=RUNNER_AUTH):
    return client.post(f"/api/v1/runs/{run_id}/runners/{runner}/events", json=body,
                       headers=headers)


def test_post_and_list_events(client):
    run = create_run(client)
    created = _post(client, run["id"], SAFETY_STOP)
    assert created.status_code == 201, created.text
    event = created.json()
    assert event["run_id"] == run["id"] and event["runner"] == "robot-1"
    assert {k: event[k] for k in SAFETY_STOP} == SAFETY_STOP
    assert event["id"] >= 1 and event["created_at"].startswith("20")
    info = _post(client, run["id"], {"kind": "info", "message": "reset done"}, runner="robot-2")
    assert info.status_code == 201 and info.json()["details"] == {}
    page = client.get(f"/api/v1/runs/{run['id']}/events").json()
    assert [e["kind"] for e in page["items"]] == ["safety_stop", "info"]
    assert page["items"][0] == event and page["next_after"] is None
    stops = client.get(f"/api/v1/runs/{run['id']}/events", params={"kind": "safety_stop"}).json()
    assert [e["id"] for e in stops["items"]] == [event["id"]]
    robot_2 = client.get(f"/api/v1/runs/{run['id']}/events", params={"runner": "robot-2"}).json()
    assert [e["message"] for e in robot_2["items"]] == ["reset done"]


def test_paging_and_runs_apart(client):
    run, other = create_run(client, "r1"), create_run(client, "r2")
    ids = [_post(client, run["id"], {"kind": "episode_aborted", "message": f"episode {i}"})
           .json()["id"] for i in range(5)]
    _post(client, other["id"], {"kind": "info", "message": "elsewhere"})
    seen, after = [], 0
    while True:
        page = client.get(f"/api/v1/runs/{run['id']}/events",
                          params={"after": after, "limit": 2}).json()
        seen += [e["id"] for e in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == ids
    assert client.get(f"/api/v1/runs/{run['id']}/events",
                      params={"after": ids[-1]}).json() == {"items": [], "next_after": None}


BAD_BODIES = {
    "kind upper case": ({"kind": "Safety", "message": "x"}, "kind"),
    "kind too long": ({"kind": "k" * 33, "message": "x"}, "kind"),
    "kind missing": ({"message": "x"}, "kind"),
    "message too long": ({"kind": "info", "message": "m" * 2001}, "message"),
    "message missing": ({"kind": "info"}, "message"),
    "details not an object": ({"kind": "info", "message": "x", "details": [1]}, "details"),
    "too many details": ({"kind": "info", "message": "x",
                          "details": {f"k{i}": i for i in range(65)}}, "details"),
    "NUL in details": ({"kind": "info", "message": "x", "details": {"a": "b\x00"}}, "NUL"),
    "extra field": ({"kind": "info", "message": "x", "level": "high"}, "level"),
}


def test_bad_bodies_unknown_run_and_auth(client):
    run = create_run(client)
    for case, (body, message) in BAD_BODIES.items():
        response = _post(client, run["id"], body)
        assert response.status_code == 422, (case, response.text)
        assert message in response.text, (case, response.text)
    nan = json.dumps({"kind": "info", "message": "x", "details": {"v": 1.5}}).replace("1.5", "NaN")
    response = client.post(f"/api/v1/runs/{run['id']}/runners/robot-1/events", content=nan,
                           headers={**RUNNER_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422 and "NaN" in response.text
    assert _post(client, run["id"], SAFETY_STOP, runner="bad name!").status_code == 422
    assert _post(client, 999, SAFETY_STOP).status_code == 404
    assert client.get("/api/v1/runs/999/events").status_code == 404
    assert client.get(f"/api/v1/runs/{run['id']}/events",
                      params={"kind": "Bad Kind"}).status_code == 422
    assert _post(client, run["id"], SAFETY_STOP, headers={}).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-000000"}
    assert _post(client, run["id"], SAFETY_STOP, headers=wrong).status_code == 403
    assert _post(client, run["id"], SAFETY_STOP, headers=ADMIN_AUTH).status_code == 201
    assert len(client.get(f"/api/v1/runs/{run['id']}/events").json()["items"]) == 1


def test_events_go_with_their_run(client):
    run = create_run(client)
    _post(client, run["id"], SAFETY_STOP)
    assert client.post(f"/api/v1/runs/{run['id']}/stop", headers=ADMIN_AUTH).is_success
    assert client.delete(f"/api/v1/runs/{run['id']}", headers=ADMIN_AUTH).status_code == 204
    assert client.get(f"/api/v1/runs/{run['id']}/events").status_code == 404


# -- the dashboard's aggregate reads -----------------------------------------------------------
def test_episode_series_columns_and_after(client, factory):
    run = create_run(client)
    mf = store_decision(factory, run["id"], kind="mf")
    mb = store_decision(factory, run["id"], kind="mb")
    uploaded = [upload(client, run["id"], episode_body(
        seq=seq, decision_id=mb if seq % 3 == 2 else mf,
        kind="mb" if seq % 3 == 2 else "mf")).json() for seq in range(7)]
    series = client.get(f"/api/v1/runs/{run['id']}/episodes/series").json()
    assert series["id"] == [e["id"] for e in uploaded]
    assert series["return"] == pytest.approx([e["return"] for e in uploaded])
    assert series["success"] == [e["success"] for e in uploaded]
    assert series["policy_kind"] == ["mf", "mf", "mb", "mf", "mf", "mb", "mf"]
    assert series["next_after"] is None
    first = client.get(f"/api/v1/runs/{run['id']}/episodes/series", params={"limit": 3}).json()
    assert first["id"] == series["id"][:3] and first["next_after"] == series["id"][2]
    rest = client.get(f"/api/v1/runs/{run['id']}/episodes/series",
                      params={"after": first["next_after"]}).json()
    assert rest["id"] == series["id"][3:]
    assert client.get("/api/v1/runs/999/episodes/series").status_code == 404
    # The literal path is not taken for an episode id, nor the other way round.
    one = client.get(f"/api/v1/runs/{run['id']}/episodes/{uploaded[0]['id']}").json()
    assert one["id"] == uploaded[0]["id"]


def test_run_summaries(client, factory):
    busy, idle = create_run(client, "busy"), create_run(client, "idle", start=False)
    decision = store_decision(factory, busy["id"])
    last = [upload(client, busy["id"], episode_body(seq=seq, decision_id=decision)).json()
            for seq in range(3)][-1]
    for name in ("robot-1", "robot-2"):
        client.post(f"/api/v1/runs/{busy['id']}/runners/{name}/heartbeat",
                    json={"status": "running"}, headers=RUNNER_AUTH)
    summaries = client.get("/api/v1/runs/summaries").json()
    assert [s["run_id"] for s in summaries] == [busy["id"], idle["id"]]
    got = summaries[0]
    assert got["last_episode_id"] == last["id"] and got["last_return"] == pytest.approx(
        last["return"])
    assert got["last_success"] == last["success"] and got["last_policy_kind"] == "mf"
    assert got["last_episode_at"] is not None and got["runners"] == 2
    assert got["last_heartbeat_at"] is not None
    assert summaries[1] == {"run_id": idle["id"], "last_episode_id": None, "last_return": None,
                            "last_success": None, "last_policy_kind": None,
                            "last_episode_at": None, "runners": 0, "last_heartbeat_at": None}
    assert [s["run_id"] for s in client.get("/api/v1/runs/summaries",
                                            params={"offset": 1}).json()] == [idle["id"]]
    assert client.get(f"/api/v1/runs/{busy['id']}").json()["name"] == "busy"
