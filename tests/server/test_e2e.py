"""End to end: `dclaw serve` as a real uvicorn process with its trainer, and an httpx client
playing a runner on the simulator with the downloaded numpy policy, on a cpu-small run in sync
mode. Every assignment after the first reflects the episode before it; the server is killed
mid-run and a new one resumes from the checkpoint with no episode lost; stop checkpoints and
frees the run."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
import uuid

import gymnasium
import httpx
import numpy as np
import pytest
from server_testkit import ADMIN, ADMIN_AUTH, FAST_OVERRIDES, RUNNER, RUNNER_AUTH

import sim
from robot.policy import NumpyPolicy
from server import migrate

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`dclaw serve` in a subprocess, with its trainer inside, or (`separate_trainer`) with
    --no-trainer beside a `dclaw trainer` process, as on two machines. Logs go to files the test
    prints on failure."""

    def __init__(self, dclaw_cmd, db_url: str, workdir, separate_trainer: bool):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DCLAW_")},
            "DCLAW_DATABASE_URL": db_url, "DCLAW_ADMIN_TOKEN": ADMIN,
            "DCLAW_RUNNER_TOKEN": RUNNER, "DCLAW_TORCH_THREADS": "1",
            "DCLAW_TRAINER_POLL_S": "0.05", "DCLAW_RETRY_AFTER_MS": "50",
            "DCLAW_CHECKPOINT_EVERY": "2", "DCLAW_LEASE_TTL_S": "3",
        }
        self.cmd, self.workdir, self.separate = dclaw_cmd, workdir, separate_trainer
        self.api: subprocess.Popen | None = None
        self.trainer: subprocess.Popen | None = None

    def _spawn(self, args: list[str], trainer_name: str, log: str) -> subprocess.Popen:
        env = {**self.env, "DCLAW_TRAINER_NAME": trainer_name}
        with (self.workdir / log).open("a") as out:
            return subprocess.Popen([*self.cmd, *args], env=env, cwd=self.workdir, stdout=out,
                                    stderr=subprocess.STDOUT)

    def start(self, trainer_name: str) -> None:
        args = ["serve", "--port", str(self.port)] + (["--no-trainer"] if self.separate else [])
        self.api = self._spawn(args, trainer_name, "serve.log")
        if self.separate:
            self.start_trainer(trainer_name)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.api.poll() is None, self.logs()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("service not ready:\n" + self.logs())

    def start_trainer(self, name: str) -> None:
        self.trainer = self._spawn(["trainer", "--name", name], name, "trainer.log")

    def kill_trainer_and_restart(self, name: str) -> None:
        """SIGKILL whatever trains (no checkpoint on the way out), then a new trainer."""
        if self.separate:
            assert self.trainer is not None
            self.trainer.kill()
            self.trainer.wait(timeout=60)
            self.start_trainer(name)
        else:
            self.stop(signal.SIGKILL)
            self.start(name)

    def stop(self, sig=signal.SIGTERM) -> int:
        """Stops the API (and the trainer process): SIGTERM is a graceful shutdown."""
        codes = []
        for process in (self.trainer, self.api):
            if process is not None and process.poll() is None:
                process.send_signal(sig)
                codes.append(process.wait(timeout=60))
        return min(codes, default=0)

    def logs(self) -> str:
        return "\n".join(f.read_text()[-5000:] for f in sorted(self.workdir.glob("*.log")))


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


def _wait(predicate, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


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
    _wait(lambda: client.get(f"/api/v1/runs/{run['id']}").json()["episodes_learned"] == 3,
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

    # Stop: the trainer finishes its step, checkpoints, frees the run.
    _wait(lambda: client.get(f"/api/v1/runs/{run['id']}").json()["episodes_learned"] == 6,
          "all episodes learnt")
    assert client.post(f"/api/v1/runs/{run['id']}/stop", headers=ADMIN_AUTH).is_success
    stopped = _wait(lambda: (r := client.get(f"/api/v1/runs/{run['id']}").json())["status"]
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
