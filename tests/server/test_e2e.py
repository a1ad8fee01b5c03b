"""End to end: `dclaw serve` as a real uvicorn process with its trainer, and an httpx client
playing a runner on the simulator with the downloaded numpy policy, on a cpu-small run in sync
mode. Every assignment after the first reflects the episode before it; the server is killed
mid-run and a new one resumes from the checkpoint with no episode lost; stop checkpoints and
frees the run."""

from __future__ import annotations

import itertools
import signal
import time
import uuid

import gymnasium
import httpx
import numpy as np
import pytest
from live_service import Service, wait_until
from server_testkit import ADMIN_AUTH, FAST_OVERRIDES, RUNNER_AUTH

import sim
from robot.policy import NumpyPolicy
from server import migrate

pytestmark = pytest.mark.slow


class SimRunner:
    """What the robot runner will do, against the simulator."""

    def __init__(self, client: httpx.Client, run_id: int, name: str = "sim-1"):
        self.client, self.run_id, self.name = client, run_id, name
        self.env = gymnasium.make(sim.ENV_ID)
        self.policies: dict[tuple[str, int], NumpyPolicy] = {}
        self.rng = np.random.default_rng(0)

    def assignment(self, seq: int, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.client.post(f"/api/v1/runs/{self.run_id}/assignments",
                                   json={"runner": self.name, "seq": seq}, headers=RUNNER_AUTH)
            if got.status_code == 200:
                return got.json()
            assert got.status_code == 503 and got.json()["status"] == "not_ready", got.text
            time.sleep(got.json()["retry_after_ms"] / 1000)
        raise AssertionError(f"no assignment for seq {seq}")

    def policy(self, a: dict) -> NumpyPolicy:
        key = (a["policy_kind"], a["policy_version"])
        if key not in self.policies:
            got = self.client.get(a["policy_url"])
            assert got.headers["x-policy-sha256"] == a["sha256"]
            self.policies[key] = NumpyPolicy.from_bytes(got.content, expected_sha256=a["sha256"])
        return self.policies[key]

    def episode(self, seq: int, a: dict) -> dict:
        policy = self.policy(a)
        obs, _ = self.env.reset(seed=seq)
        observations, actions, rewards, stamps = [obs], [], [], [0.0]
        for t in range(a["episode_steps"]):
            action = policy.act(obs, deterministic=a["deterministic"], rng=self.rng)
            obs, reward, _, _, _ = self.env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            stamps.append(0.1 * (t + 1))
        return {
            "runner": self.name, "seq": seq, "policy_kind": a["policy_kind"],
            "policy_version": a["policy_version"], "decision_id": a["decision_id"],
            "observations": np.asarray(observations).tolist(),
            "actions": np.asarray(actions).tolist(), "rewards": [float(r) for r in rewards],
            "timestamps": stamps, "timing": {"period_mean_s": 0.1, "missed_deadlines": 0},
        }

    def upload(self, body: dict, key: str) -> httpx.Response:
        return self.client.post(f"/api/v1/runs/{self.run_id}/episodes", json=body,
                                headers={**RUNNER_AUTH, "Idempotency-Key": key})

    def play(self, seq: int) -> dict:
        a = self.assignment(seq)
        body = self.episode(seq, a)
        stored = self.upload(body, str(uuid.uuid4()))
        assert stored.status_code == 201, stored.text
        self.last = (body, stored.json())
        return a


@pytest.mark.parametrize(
    "backend", ["sqlite", "postgresql"],
    ids=["sqlite-trainer-in-serve", "postgresql-separate-dclaw-trainer"])
def test_runner_and_service_end_to_end(request, backend, dclaw_cmd, tmp_path):
    db_url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    migrate.upgrade(db_url)
    service = Service(dclaw_cmd, db_url, tmp_path, separate_trainer=backend == "postgresql")
    service.start("trainer-one")
    try:
        _play_the_run(service)
    except BaseException:
        print(service.logs())
        raise
    finally:
        service.stop(signal.SIGKILL)


def _play_the_run(service: Service) -> None:
    client = httpx.Client(base_url=service.url, timeout=30)
    run = client.post("/api/v1/runs", headers=ADMIN_AUTH, json={
        "name": "e2e", "algorithm": "unified", "preset": "cpu-small", "mode": "sync",
        "overrides": FAST_OVERRIDES}).json()
    assert client.post(f"/api/v1/runs/{run['id']}/start", headers=ADMIN_AUTH).is_success
    runner = SimRunner(client, run["id"])
    played = [runner.play(seq) for seq in range(3)]
    # Sync mode: the assignment for seq n comes from a decision made after learning episode n-1.
    assert [a["episodes_seen"] for a in played] == [0, 1, 2]
    body, first = runner.last  # the answer was lost: the runner sends it again, new key
    retry = runner.upload(body, "retry-of-a-lost-answer")
    assert retry.status_code == 200 and retry.json() == first

    # The trainer dies (SIGKILL: no checkpoint on the way out); a new one takes over once the
    # lease expires, from the checkpoint at 2 episodes, and relearns what came after it.
    wait_until(lambda: client.get(f"/api/v1/runs/{run['id']}").json()["episodes_learned"] == 3,
          "episode 3 learnt")
    service.kill_trainer_and_restart("trainer-two")
    for seq in range(3, 6):
        played.append(runner.play(seq))
    assert [a["episodes_seen"] for a in played] == list(range(6))
    gate = {d["id"]: d for d in client.get(f"/api/v1/runs/{run['id']}/gate",
                                           params={"limit": 1000}).json()}
    used = [gate[a["decision_id"]] for a in played]
    # seq 3 may get trainer-one's last decision (made after learning episode 2: valid);
    # seq 4 and 5 need episodes only trainer-two learnt.
    assert [d["trainer"] for d in used[:3]] == ["trainer-one"] * 3
    assert [d["trainer"] for d in used[4:]] == ["trainer-two"] * 2
    versions = [d["mf_version"] + d["mb_version"] for d in used]
    # Warm-up (2 episodes) trains nothing; from then on every decision has newer policies.
    assert versions[:2] == [0, 0], versions
    assert all(b > a for a, b in itertools.pairwise(versions[1:])), versions
    assert len(runner.policies) >= 3

    # Stop: the trainer ends its step, checkpoints, frees the run.
    wait_until(lambda: client.get(f"/api/v1/runs/{run['id']}").json()["episodes_learned"] == 6,
          "all episodes learnt")
    assert client.post(f"/api/v1/runs/{run['id']}/stop", headers=ADMIN_AUTH).is_success
    stopped = wait_until(lambda: (r := client.get(f"/api/v1/runs/{run['id']}").json())["status"]
                    == "stopped" and r, "stopped")
    assert stopped["episodes"] == 6 and stopped["trainer"] is None
    checkpoints = client.get(f"/api/v1/runs/{run['id']}/checkpoints").json()
    assert checkpoints[-1]["episodes_seen"] == 6
    episodes = client.get(f"/api/v1/runs/{run['id']}/episodes").json()["items"]
    assert sorted(e["train_index"] for e in episodes) == list(range(6))
    refused = client.post(f"/api/v1/runs/{run['id']}/assignments",
                          json={"runner": "sim-1", "seq": 6}, headers=RUNNER_AUTH)
    assert refused.status_code == 409 and refused.json()["status"] == "refused"

    metrics = client.get("/metrics").text
    # The API process stored seq 0..5, or seq 3..5 when it was restarted with its trainer.
    stored = "6.0" if service.separate else "3.0"
    assert f"dclaw_episodes_stored_total {stored}" in metrics
    assert "dclaw_episode_upload_retries_total" in metrics
    assert 'route="/api/v1/runs/{run_id}/assignments"' in metrics
    openapi = client.get("/openapi.json").json()
    assert "503" in openapi["paths"]["/api/v1/runs/{run_id}/assignments"]["post"]["responses"]
    # SIGTERM: a graceful shutdown (uvicorn then re-raises the signal for its exit status).
    assert service.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in service.logs()
