"""The trainer over SQL on SQLite and PostgreSQL: learning, decisions and exported policies,
checkpoints, a takeover that resumes from the checkpoint with no episode lost, fencing of a stale
trainer, failures, and leases that never let two trainers hold one run."""

import itertools
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from server_testkit import (
    ADMIN_AUTH,
    RUNNER_AUTH,
    create_run,
    episode_body,
    make_settings,
    store_decision,
    upload,
)

from robot.policy import NumpyPolicy
from server.db import make_engine, make_session_factory, transaction
from server.errors import LeaseLost
from server.metrics import TrainerMetrics
from server.models import Episode, GateDecision
from server.repository.episodes import episode_arrays
from server.repository.leases import claim_run, release
from server.trainer.run_trainer import RunTrainer
from server.trainer.supervisor import RunWorker, TrainerSupervisor


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two busy cores: one thread is faster for these tiny networks
    yield
    torch.set_num_threads(threads)


def _claim(factory, owner="trainer-a"):
    with transaction(factory) as session:
        return claim_run(session, owner=owner, now=time.time(), ttl_s=30)


def _expire_leases(factory):
    with transaction(factory) as session:
        session.execute(sa.text("UPDATE trainer_leases SET expires_at = 0"))


def _play(client, run_id, seq, runner="robot-1", seed=None):
    """One runner turn: assignment, then an episode that names it."""
    got = client.post(f"/api/v1/runs/{run_id}/assignments", json={"runner": runner, "seq": seq},
                      headers=RUNNER_AUTH)
    assert got.status_code == 200, got.text
    a = got.json()
    body = episode_body(runner=runner, seq=seq, decision_id=a["decision_id"],
                        kind=a["policy_kind"], version=a["policy_version"],
                        seed=seq if seed is None else seed)
    assert upload(client, run_id, body).status_code == 201
    return a


def _episodes(factory, run_id):
    with transaction(factory) as session:
        return session.scalars(sa.select(Episode).where(Episode.run_id == run_id)
                               .order_by(Episode.id)).all()


def test_learns_decides_exports_and_checkpoints(client, factory, settings):
    run = create_run(client)
    trainer = RunTrainer(claim=_claim(factory), settings=settings, session_factory=factory)
    trainer.load()
    assert trainer.step() == 0  # nothing to learn yet, but the first decision
    for i in range(3):  # three robots, each on its first episode
        _play(client, run["id"], 0, runner=f"robot-{i}", seed=i)
    assert trainer.step() == 3  # one batch
    assert [e.train_index for e in _episodes(factory, run["id"])] == [0, 1, 2]
    gate = client.get(f"/api/v1/runs/{run['id']}/gate").json()
    assert [d["episodes_seen"] for d in gate] == [0, 3]
    # warm-up is 2 episodes: the 2nd and 3rd episode each train SAC once more
    assert gate[0]["reason"] == "warm-up" and gate[1]["mf_version"] == 2
    metrics = client.get(f"/api/v1/runs/{run['id']}/metrics").json()
    assert [m["episodes_seen"] for m in metrics] == [1, 2, 3]
    assert "sac/critic_loss" in metrics[2]["stats"]
    assert metrics[2]["stats"]["rate/sac_updates_per_s"] > 0
    for policy in client.get(f"/api/v1/runs/{run['id']}/policies").json():
        data = client.get(f"/api/v1/runs/{run['id']}/policies/{policy['version']}",
                          params={"kind": policy["kind"]}).content
        loaded = NumpyPolicy.from_bytes(data, expected_sha256=policy["sha256"])
        assert loaded.kind == policy["kind"] and loaded.version == policy["version"]
    # checkpoint_every (5) not reached: no checkpoint until asked
    assert client.get(f"/api/v1/runs/{run['id']}/checkpoints").json() == []
    trainer.checkpoint_if_behind()
    checkpoints = client.get(f"/api/v1/runs/{run['id']}/checkpoints").json()
    assert [c["episodes_seen"] for c in checkpoints] == [3]


def test_an_interrupted_step_stores_what_it_learnt_and_leaves_the_rest(client, factory,
                                                                        settings):
    run = create_run(client)
    trainer = RunTrainer(claim=_claim(factory), settings=settings, session_factory=factory)
    trainer.load()
    trainer.step()
    for i in range(3):
        _play(client, run["id"], 0, runner=f"robot-{i}", seed=i)
    asked = []
    assert trainer.step(lambda: asked.append(1) or True) == 1  # a stop came during the first
    assert asked == [1]
    assert [e.train_index for e in _episodes(factory, run["id"])] == [0, None, None]
    gate = client.get(f"/api/v1/runs/{run['id']}/gate").json()
    assert [d["episodes_seen"] for d in gate] == [0, 1]  # and decided on what it had learnt
    assert trainer.step() == 2
    assert [e.train_index for e in _episodes(factory, run["id"])] == [0, 1, 2]


def test_takeover_resumes_from_checkpoint_with_no_episode_lost(client, db_url, tmp_path):
    settings = make_settings(db_url, checkpoint_every=2, checkpoint_dir=tmp_path / "ckpt")
    factory = make_session_factory(make_engine(db_url, pool_size=2))
    run = create_run(client)
    first = RunTrainer(claim=_claim(factory, "trainer-a"), settings=settings,
                       session_factory=factory)
    first.load()
    first.step()
    for seq in range(3):
        _play(client, run["id"], seq)
        first.step()  # learns seq; checkpoints after 2 episodes
    assert first.checkpointed_at == 2 and first.agent.episodes_seen == 3
    # trainer-a dies (its lease runs out); more episodes arrive meanwhile.
    _expire_leases(factory)
    for seq in (3, 4):
        body = episode_body(seq=seq, decision_id=1, seed=seq)
        assert upload(client, run["id"], body).status_code == 201
    second = RunTrainer(claim=_claim(factory, "trainer-b"), settings=settings,
                        session_factory=factory)
    assert second.claim.generation == first.claim.generation + 1
    second.load()
    assert second.agent.episodes_seen == 2  # from the checkpoint
    assert second.step() == 3  # episode 2 again (learnt after the checkpoint), then 3 and 4
    episodes = _episodes(factory, run["id"])
    assert sorted(e.train_index for e in episodes) == [0, 1, 2, 3, 4]
    assert len(second.agent.buffer) == 5
    stored = np.stack([episode_arrays(e).observations for e in
                       sorted(episodes, key=lambda e: e.train_index)])
    np.testing.assert_array_equal(second.agent.buffer.all_trajectories().obs.numpy(), stored)
    # The stale trainer can no longer write anything.
    with pytest.raises(LeaseLost):
        first.step()
    assert sorted(e.train_index for e in _episodes(factory, run["id"])) == [0, 1, 2, 3, 4]
    # Versions name one document each: trainer-b's continue after trainer-a's.
    policies = client.get(f"/api/v1/runs/{run['id']}/policies", params={"kind": "mf"}).json()
    versions = [p["version"] for p in policies]
    assert versions == sorted(set(versions))
    assert _play(client, run["id"], 5)["episodes_seen"] == 5
    assert list((tmp_path / "ckpt").rglob("*.pt"))  # checkpoints as files in checkpoint_dir


def test_a_failing_run_is_marked_failed(client, factory, settings, monkeypatch):
    run = create_run(client)

    def boom(self):
        raise RuntimeError("boom: the learner diverged")

    monkeypatch.setattr(RunTrainer, "step", boom)
    worker = RunWorker(claim=_claim(factory), settings=settings, factory=factory,
                       metrics=TrainerMetrics(),
                       shutdown=threading.Event())
    worker.run()  # in this thread
    got = client.get(f"/api/v1/runs/{run['id']}").json()
    assert got["status"] == "failed" and "boom" in got["error"] and got["trainer"] is None
    assert _claim(factory) is None  # a failed run is not trained until started again


def test_claims_are_exclusive_under_concurrency(client, settings, factory):
    runs = [create_run(client, name=f"r{i}")["id"] for i in range(3)]
    barrier = threading.Barrier(6)
    claims, errors = [], []

    def contend(i):
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            barrier.wait()
            with transaction(make_session_factory(engine)) as session:
                claims.append(claim_run(session, owner=f"t{i}", now=time.time(), ttl_s=30))
        except Exception as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    taken = [c.run_id for c in claims if c is not None]
    assert len(taken) == len(set(taken))
    assert set(taken) <= set(runs)
    if settings.is_sqlite:
        assert len(taken) >= 1  # serialised writers: at least one, never the same run twice
    else:
        assert sorted(taken) == sorted(runs)  # SKIP LOCKED: every run once


def test_skip_locked_does_not_wait_on_a_run_being_claimed(pg_url):
    from fastapi.testclient import TestClient

    from server import migrate
    from server.app import create_app

    migrate.upgrade(pg_url)
    with TestClient(create_app(make_settings(pg_url))) as pg_client:
        first, second = (create_run(pg_client, name=n)["id"] for n in ("a", "b"))
    factory = make_session_factory(make_engine(pg_url, pool_size=2))
    with factory() as holder, holder.begin():  # an open claim: the row of run a stays locked
        held = claim_run(holder, owner="slow", now=time.time(), ttl_s=30)
        assert held.run_id == first
        start = time.perf_counter()
        with transaction(factory) as session:
            other = claim_run(session, owner="fast", now=time.time(), ttl_s=30)
        assert other.run_id == second and time.perf_counter() - start < 2.0


def test_two_supervisors_never_train_one_run_at_once(client, db_url):
    run = create_run(client, overrides={"warmup_episodes": 1000})  # cheap steps: no learning
    factories = [make_session_factory(make_engine(db_url, pool_size=4)) for _ in range(2)]
    supervisors = [
        TrainerSupervisor(settings=make_settings(db_url, trainer_name=name, lease_ttl_s=3,
                                                 trainer_poll_s=0.02, checkpoint_every=3),
                          session_factory=f)
        for name, f in zip(("alpha", "beta"), factories, strict=True)
    ]
    for s in supervisors:
        s.start()
    try:
        for seq in range(6):
            _wait_for_assignment(client, run["id"], seq)
            if seq == 2:  # the holder shuts down: it checkpoints and frees the lease
                holder = next(s for s in supervisors if s.workers)
                holder.stop()
        _wait_for_assignment(client, run["id"], 6)
    finally:
        for s in supervisors:
            s.stop()
    with transaction(factories[0]) as session:
        owners = session.scalars(sa.select(GateDecision.trainer).where(
            GateDecision.run_id == run["id"]).order_by(GateDecision.id)).all()
    # One trainer, then the other after the hand-over; never interleaved.
    changes = sum(a != b for a, b in itertools.pairwise(owners))
    assert changes == 1, owners
    assert sorted(e.train_index for e in _episodes(factories[0], run["id"])) == list(range(6))


def _wait_for_assignment(client, run_id, seq, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = client.post(f"/api/v1/runs/{run_id}/assignments",
                          json={"runner": "robot-1", "seq": seq}, headers=RUNNER_AUTH)
        if got.status_code == 200:
            a = got.json()
            if seq < 6:
                body = episode_body(seq=seq, decision_id=a["decision_id"],
                                    version=a["policy_version"], seed=seq)
                assert upload(client, run_id, body).status_code == 201
            return a
        assert got.status_code == 503, got.text
        time.sleep(0.02)
    raise AssertionError(f"no assignment for seq {seq} within {timeout} s")


def test_release_frees_the_run(client, factory):
    create_run(client)
    claim = _claim(factory)
    assert _claim(factory, "other") is None
    with transaction(factory) as session:
        assert release(session, claim=claim)
    assert _claim(factory, "other").generation == claim.generation + 1


def test_a_run_starts_from_the_prior_runs_last_successful_episodes(client, factory, settings):
    source = create_run(client, name="earlier")
    decision = store_decision(factory, source["id"])
    bodies = []
    for seq, final_error in enumerate([3.0, 0.05, 2.0, -0.02, 0.0, 1.0]):
        body = episode_body(seq=seq, decision_id=decision)
        body["observations"][-1][20] = final_error  # ROBEL's success: within 0.1 rad at the end
        assert upload(client, source["id"], body).status_code == 201
        bodies.append(body)
    assert client.post(f"/api/v1/runs/{source['id']}/stop", headers=ADMIN_AUTH).is_success

    run = create_run(client, name="later", prior={"run_id": source["id"], "count": 2})
    assert client.get(f"/api/v1/runs/{run['id']}").json()["prior"] == {
        "run_id": source["id"], "count": 2}
    trainer = RunTrainer(claim=_claim(factory), settings=settings, session_factory=factory)
    assert trainer.claim.run_id == run["id"]
    agent = trainer.load()
    # The last two successful episodes (seq 3 and 4), oldest first, are not the run's own.
    assert (agent.prior_episodes, agent.episodes_seen, len(agent.buffer)) == (2, 0, 2)
    np.testing.assert_allclose(agent.buffer.all_trajectories().obs.numpy(),
                               np.array([bodies[3]["observations"], bodies[4]["observations"]]))
    trainer.step()
    _play(client, run["id"], 0)
    assert trainer.step() == 1
    assert [e.train_index for e in _episodes(factory, run["id"])] == [0]  # the run's own count
    metrics = client.get(f"/api/v1/runs/{run['id']}/metrics").json()
    assert metrics[-1]["stats"]["buffer/prior_episodes"] == 2  # what a user sees of them
    assert metrics[-1]["stats"]["buffer/episodes"] == 3
    assert len(agent.buffer) == 3
    assert [e.train_index for e in _episodes(factory, source["id"])] == [None] * 6  # untouched


def test_prior_episodes_must_exist_when_the_run_is_created(client, factory):
    source = create_run(client, name="failing")
    decision = store_decision(factory, source["id"])
    body = episode_body(seq=0, decision_id=decision)
    body["observations"][-1][20] = 3.0
    assert upload(client, source["id"], body).status_code == 201
    for prior, message in [
        ({"run_id": source["id"]}, f"run {source['id']} holds no successful episode of 40 steps"),
        ({"run_id": 999}, "no run with id 999"),
        ({"run_id": source["id"], "count": 0}, "count"),
        ({"run_id": source["id"], "episodes": 3}, "episodes"),
    ]:
        refused = client.post("/api/v1/runs", headers=ADMIN_AUTH, json={
            "name": "later", "preset": "cpu-small", "prior": prior})
        assert refused.status_code == 422 and message in refused.text, refused.text
    assert [r["name"] for r in client.get("/api/v1/runs").json()] == ["failing"]
