"""Episode upload over HTTP on SQLite and PostgreSQL: stored once whatever the retries, every
bad input a 4xx with a message and nothing stored changed; summaries with paging."""

import json
from concurrent.futures import ThreadPoolExecutor

import anyio
import numpy as np
import pytest
from fastapi.testclient import TestClient
from server_testkit import (
    ADMIN_AUTH,
    RUNNER_AUTH,
    create_run,
    episode_body,
    make_settings,
    store_decision,
    upload,
)
from sqlalchemy import event, func, select, text

from server import migrate
from server.app import create_app
from server.db import (
    make_async_engine,
    make_async_session_factory,
    make_engine,
    make_session_factory,
)
from server.deps import Transaction
from server.models import GateDecision
from server.repository import learning


@pytest.fixture
def run(client, factory):
    run = create_run(client)
    run["decision"] = store_decision(factory, run["id"])
    return run


def _count(client, run_id) -> int:
    return client.get(f"/api/v1/runs/{run_id}").json()["episodes"]


def test_upload_get_and_arrays_roundtrip(client, run):
    body = episode_body(decision_id=run["decision"])
    first = upload(client, run["id"], body)
    assert first.status_code == 201, first.text
    summary = first.json()
    assert summary["steps"] == 40 and summary["train_index"] is None
    assert summary["return"] == pytest.approx(float(np.sum(np.float32(body["rewards"]))), 1e-5)
    detail = client.get(f"/api/v1/runs/{run['id']}/episodes/{summary['id']}",
                        params={"arrays": True}).json()
    np.testing.assert_allclose(detail["observations"], body["observations"], rtol=1e-6)
    np.testing.assert_allclose(detail["actions"], body["actions"], rtol=1e-6)
    assert len(detail["timestamps"]) == 41 and detail["timing"] == body["timing"]


def test_retries_store_nothing_twice(client, run):
    body = episode_body(decision_id=run["decision"])
    first = upload(client, run["id"], body, key="retry-key-0001")
    again = upload(client, run["id"], body, key="retry-key-0001")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    # A retry under a new key (a runner that lost its key) is still the same episode.
    other_key = upload(client, run["id"], body, key="retry-key-0002")
    assert other_key.status_code == 200 and other_key.json()["id"] == first.json()["id"]
    assert _count(client, run["id"]) == 1
    changed = dict(body, rewards=[r + 1 for r in body["rewards"]])
    reused_seq = upload(client, run["id"], changed, key="retry-key-0003")
    assert reused_seq.status_code == 409 and "seq 0" in reused_seq.json()["detail"]
    reused_key = upload(client, run["id"], dict(changed, seq=1), key="retry-key-0001")
    assert reused_key.status_code == 409 and "Idempotency-Key" in reused_key.json()["detail"]
    assert _count(client, run["id"]) == 1
    stored = client.get(f"/api/v1/runs/{run['id']}/episodes/{first.json()['id']}",
                        params={"arrays": True}).json()
    np.testing.assert_allclose(stored["rewards"], body["rewards"], rtol=1e-6)


def _bad(body: dict, **changes) -> dict:
    return {**body, **changes}


BAD_BODIES = {
    "short observations": (lambda b: _bad(b, observations=b["observations"][:-1]),
                           "observations has shape (40, 21), expected (41, 21)"),
    "wide actions": (lambda b: _bad(b, actions=[[*row, 0.0] for row in b["actions"]]),
                     "actions has shape (40, 10)"),
    "ragged": (lambda b: _bad(b, actions=[b["actions"][0][:3], *b["actions"][1:]]),
               "actions is not a rectangular array"),
    "rewards 2-d": (lambda b: _bad(b, rewards=[[r] for r in b["rewards"]]), "rewards"),
    "timestamps length": (lambda b: _bad(b, timestamps=b["timestamps"][:5]), "timestamps"),
    "timestamps backwards": (lambda b: _bad(b, timestamps=b["timestamps"][::-1]), "decrease"),
    "too large for float32": (lambda b: _bad(b, rewards=[1e300] * 40), "too large"),
    "unknown policy version": (lambda b: _bad(b, policy_version=7),
                               "has no mf policy version 7 (newest: 0)"),
    "unknown kind": (lambda b: _bad(b, policy_kind="mb"), "has no mb policy version 0"),
    "bad kind": (lambda b: _bad(b, policy_kind="ppo"), "policy_kind"),
    "unknown decision": (lambda b: _bad(b, decision_id=99), "has no gate decision 99"),
    "negative seq": (lambda b: _bad(b, seq=-1), "seq"),
    "runner name": (lambda b: _bad(b, runner="robot 1; drop"), "runner"),
    "extra field": (lambda b: _bad(b, colour="red"), "colour"),
    "timing not numbers": (lambda b: _bad(b, timing={"x": "slow"}), "timing"),
    "missing rewards": (lambda b: {k: v for k, v in b.items() if k != "rewards"}, "rewards"),
}


def test_bad_bodies(client, run):
    """Each case alone (one database per run of the test, to keep the suite quick)."""
    good = episode_body(decision_id=run["decision"])
    stored = upload(client, run["id"], good).json()
    for case, (make, message) in BAD_BODIES.items():
        body = make(episode_body(seq=1, decision_id=run["decision"]))
        response = upload(client, run["id"], body, key="bad-body-key-01")
        assert response.status_code == 422, (case, response.text)
        assert message in response.text, (case, response.text)
    assert _count(client, run["id"]) == 1
    assert client.get(f"/api/v1/runs/{run['id']}/episodes").json()["items"] == [stored]


def test_nan_and_infinity(client, run):
    body = episode_body(decision_id=run["decision"])
    for literal in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps(body).replace(str(body["observations"][3][5]), literal, 1)
        assert literal in text
        response = client.post(f"/api/v1/runs/{run['id']}/episodes", content=text.encode(),
                               headers={**RUNNER_AUTH, "Idempotency-Key": "nan-key-0001",
                                        "Content-Type": "application/json"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][-3:] == ["observations", 3, 5]
        assert "finite" in response.text
    assert _count(client, run["id"]) == 0


def _post_text(client, run_id: int, text: str | bytes, key: str):
    return client.post(f"/api/v1/runs/{run_id}/episodes",
                       content=text.encode() if isinstance(text, str) else text,
                       headers={**RUNNER_AUTH, "Idempotency-Key": key,
                                "Content-Type": "application/json"})


def _with_cell(body: dict, literal: str) -> str:
    """The body as JSON text with observations[3][5] written as `literal`."""
    marker = -123.456
    rows = [list(row) for row in body["observations"]]
    rows[3][5] = marker
    return json.dumps(dict(body, observations=rows)).replace(str(marker), literal, 1)


@pytest.mark.parametrize(("literal", "kind"), [
    ("1e400", "finite_number"),  # overflows to inf while parsing
    ('"x"', "float_parsing"),
    ("null", "float_type"),
    ("[0.5]", "float_type"),
    ("{}", "float_type"),
])
def test_bad_cells_name_the_cell(client, run, literal, kind):
    """The fast JSON parser hands pydantic the same values as `json.loads`: every bad number
    is a 422 at its place in the array."""
    text = _with_cell(episode_body(decision_id=run["decision"]), literal)
    response = _post_text(client, run["id"], text, "bad-cell-key-01")
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"][-3:] == ["observations", 3, 5] and error["type"] == kind
    assert _count(client, run["id"]) == 0


def test_floats_stored_as_json_loads_reads_them(client, run):
    """Digits that round at the last bit of a float64 or a float32, a float32 subnormal, the
    float32 maximum, -0.0 and an integer: stored as np.float32(json.loads(...)), to the bit."""
    literals = ["0.1", "1.00000000000000011102230246251565404236316680908203125",
                "1.000000000000000111022302462515654042363166809082031250001", "1e-45",
                "1.40129846432481707e-45", "3.4028234663852886e38", "-0.0", "7",
                "0.30000000000000004", "16777217", "2.0000001192092895507812",
                "-1.1754943508222875e-38", "9007199254740993"]
    body = episode_body(decision_id=run["decision"])
    text = json.dumps(dict(body, observations=[[0.0] * 21] * 41))
    cells = ", ".join(literals + ["0"] * (21 - len(literals)))
    text = text.replace("[" + ", ".join(["0.0"] * 21) + "]", "[" + cells + "]", 1)
    response = _post_text(client, run["id"], text, "float-bits-key-01")
    assert response.status_code == 201, response.text
    stored = client.get(f"/api/v1/runs/{run['id']}/episodes/{response.json()['id']}",
                        params={"arrays": True}).json()["observations"]
    expected = np.asarray(json.loads(text)["observations"], dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(stored, dtype=np.float32).view(np.uint32),
                                  expected.view(np.uint32))


@pytest.mark.parametrize(("text", "position"), [
    (b'{"runner": ', 11),
    (b'{"runner": "robot-1"} trailing', 22),
    (b"{'runner': 1}", 1),
])
def test_malformed_json_answered_as_before(client, run, text, position):
    """What the fast parser refuses goes through `json.loads`: the same 422 json_invalid with
    the position `json.loads` reports."""
    response = _post_text(client, run["id"], text, "malformed-key-01")
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [
        {"loc": ["body", position], "msg": "JSON decode error", "type": "json_invalid"}]


def test_json_that_only_json_loads_reads(client, run):
    """A lone surrogate escape: pydantic-core's parser refuses it, `json.loads` reads it, and
    the runner name is refused by its pattern as before."""
    body = episode_body(decision_id=run["decision"])
    text = json.dumps(body).replace('"robot-1"', '"\\ud800"')
    response = _post_text(client, run["id"], text, "surrogate-key-01")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "runner"]


def test_concurrent_uploads_none_lost_retries_once(client, run):
    """Uploads in flight together (the async route's worker threads): every one stored once,
    and a retry racing its first upload gets the same episode."""
    bodies = [episode_body(runner=f"robot-{i % 4}", seq=i, decision_id=run["decision"])
              for i in range(12)]

    def send(i: int):
        body = bodies[i % len(bodies)]
        return upload(client, run["id"], body, key=f"race-key-{body['runner']}-{body['seq']}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(2 * len(bodies))))
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    assert sorted(a.status_code for a in answers).count(201) == len(bodies)
    first, again = answers[: len(bodies)], answers[len(bodies):]
    assert [a.json()["id"] for a in first] == [a.json()["id"] for a in again]
    assert _count(client, run["id"]) == len(bodies)


def test_transaction_commits_or_rolls_back(factory, settings, run):
    """`TransactionDep`'s unit of work: committed when the work returns, rolled back when it
    raises (the route's 4xx answers store nothing), on a worker thread and, on PostgreSQL,
    through the asyncio engine on the event loop."""
    def decide(session, *, fail: bool) -> int:
        decision = learning.add_decision(session, run_id=run["id"], episodes_seen=0, record={
            "choice": "mf", "reason": "test", "mf_version": 0, "mb_version": 0}, trainer="t")
        session.flush()
        if fail:
            raise ValueError("after a write")
        return decision.id

    def count() -> int:
        with factory() as session:
            return session.scalar(select(func.count()).select_from(GateDecision)
                                  .where(GateDecision.run_id == run["id"]))

    async def on_loop(fail: bool) -> int:
        engine = make_async_engine(settings.database_url)
        try:
            return await Transaction(factory, make_async_session_factory(engine)).run(
                decide, fail=fail)
        finally:
            await engine.dispose()

    runs = [lambda fail: Transaction(factory).run(decide, fail=fail)]
    if settings.database_url.startswith("postgresql"):
        runs.append(on_loop)
    else:
        assert make_async_engine(settings.database_url) is None  # SQLite: worker threads
    for work in runs:
        before = count()
        assert anyio.run(work, False) > 0
        with pytest.raises(ValueError, match="after a write"):
            anyio.run(work, True)
        assert count() == before + 1


def test_uploads_survive_postgresql_dropping_the_connections(pg_url):
    """A PostgreSQL restart, failover or idle timeout drops the service's pooled connections:
    both pools check theirs before use (pre-ping), so the next upload (asyncio engine) and the
    next read (sync engine) reconnect and succeed. Nothing is lost."""
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url, pool_size=1)
    factory = make_session_factory(engine)
    try:
        with TestClient(create_app(make_settings(pg_url))) as client:
            run = create_run(client)
            decision = store_decision(factory, run["id"])
            first = upload(client, run["id"], episode_body(decision_id=decision))
            assert first.status_code == 201, first.text
            assert _count(client, run["id"]) == 1  # both pools now hold a connection
            with factory() as session:
                dropped = session.scalar(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"))
            assert dropped >= 2
            second = upload(client, run["id"], episode_body(decision_id=decision, seq=1))
            assert second.status_code == 201, second.text
            assert _count(client, run["id"]) == 2
    finally:
        engine.dispose()


def test_the_asyncio_pool_keeps_its_connections_under_steady_concurrency(pg_url):
    """16 requests in flight, round after round, reuse the connections the first round opened:
    none is closed on return and reopened for the next (with 10 + 10 overflow, each round
    closed and reopened six; that churn cost a fifth to two-fifths of the ingest throughput,
    docs/BENCHMARKS.md)."""
    opened, closed = [], []

    async def rounds() -> None:
        engine = make_async_engine(pg_url)
        event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))
        event.listen(engine.sync_engine, "close", lambda *_: closed.append(1))

        async def one() -> None:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT pg_sleep(0.05)"))

        try:
            for _ in range(3):
                async with anyio.create_task_group() as group:
                    for _ in range(16):
                        group.start_soon(one)
        finally:
            await engine.dispose()

    anyio.run(rounds)
    assert len(opened) == 16  # the first round's, held by the pool since
    assert len(closed) == 16  # by dispose() at the end, not between rounds


def test_uploads_use_the_asyncio_engine_on_postgresql(client, settings):
    """The running app awaits its hot routes' database work on PostgreSQL; SQLite has none."""
    made = client.app.state.async_session_factory is not None
    assert made == settings.database_url.startswith("postgresql")


def test_idempotency_key_format(client, run):
    cases = [(None, "missing Idempotency-Key"), ("short", "malformed"),
             ("has space 12345", "malformed"), ("x" * 200, "malformed"),
             ("-starts-with-dash", "malformed")]
    for key, message in cases:
        headers = dict(RUNNER_AUTH)
        if key is not None:
            headers["Idempotency-Key"] = key
        response = client.post(f"/api/v1/runs/{run['id']}/episodes", headers=headers,
                               json=episode_body(decision_id=run["decision"]))
        assert response.status_code == 400 and message in response.json()["detail"], key
    assert _count(client, run["id"]) == 0


def test_unknown_run_oversized_body_and_auth(client, run, settings):
    body = episode_body(decision_id=run["decision"])
    assert upload(client, 999, body).status_code == 404
    huge = dict(body, timing={f"k{i}": 0.5 for i in range(60)},
                observations=body["observations"] * 400)
    payload = json.dumps(huge).encode()
    assert len(payload) > settings.max_body_bytes
    response = upload(client, run["id"], huge)
    assert response.status_code == 413 and "larger than" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit counts the stream
        for i in range(0, len(payload), 65536):
            yield payload[i:i + 65536]

    streamed = client.post(f"/api/v1/runs/{run['id']}/episodes", content=chunks(), headers={
        **RUNNER_AUTH, "Idempotency-Key": "stream-key-01", "Content-Type": "application/json"})
    assert streamed.status_code == 413
    no_token = client.post(f"/api/v1/runs/{run['id']}/episodes", json=body,
                           headers={"Idempotency-Key": "noauth-key-01"})
    assert no_token.status_code == 401
    # The admin token may do what a runner does.
    admin = client.post(f"/api/v1/runs/{run['id']}/episodes", json=body,
                        headers={**ADMIN_AUTH, "Idempotency-Key": "admin-key-001"})
    assert admin.status_code == 201
    assert _count(client, run["id"]) == 1


def test_paging(client, run):
    ids = []
    for seq in range(5):
        for runner in ("robot-a", "robot-b"):
            body = episode_body(runner=runner, seq=seq, decision_id=run["decision"],
                                seed=seq * 2 + (runner == "robot-b"))
            ids.append(upload(client, run["id"], body).json()["id"])
    seen, after = [], 0
    while True:
        page = client.get(f"/api/v1/runs/{run['id']}/episodes",
                          params={"after": after, "limit": 3}).json()
        seen += [e["id"] for e in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == ids
    only_b = client.get(f"/api/v1/runs/{run['id']}/episodes", params={"runner": "robot-b"}).json()
    assert [e["seq"] for e in only_b["items"]] == [0, 1, 2, 3, 4]
    assert "observations" not in only_b["items"][0]
    assert client.get(f"/api/v1/runs/{run['id']}/episodes/99999").status_code == 404
    assert client.get("/api/v1/runs/999/episodes").status_code == 404
    assert client.get(f"/api/v1/runs/{run['id']}/episodes",
                      params={"runner": "a\x00b"}).status_code == 422
