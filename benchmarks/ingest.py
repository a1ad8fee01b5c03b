"""Episode ingest and assignment latency through the real service (`dclaw serve --no-trainer`
under uvicorn) into PostgreSQL.

A fresh schema is migrated, a run is created and started, and one policy and gate decision are
stored directly (no trainer: this measures the API and the database). Then `--clients` threads,
each with its own HTTP connection, upload `--episodes` full 40-step episodes each (pre-encoded
JSON, a fresh Idempotency-Key per upload); the rows are counted afterwards. Last, one client asks
for `--assignments` assignments that are ready, one at a time.

The client threads share the machine, and one Python process, with the service: `--client
httpx` (the default, and the only client before) costs 0.7-0.8 ms of CPU per request under 16
threads on the 2-core machine of docs/BENCHMARKS.md, `--client stdlib` (http.client) 0.1-0.2
ms. `--trivial` sends the same clients to GET /healthz instead (no body, no database): the floor
that the clients and the framework set. The CPU time per request of the service process and of
the clients is printed too.

    python -m benchmarks.ingest [--clients 16] [--episodes 40] [--assignments 500]
        [--workers 1] [--rate 0] [--client httpx|stdlib] [--trivial]
        [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa

from dclaw.service_process import free_port, wait_ready
from server import migrate
from server.db import make_engine, make_session_factory, transaction
from server.repository import learning
from server.settings import Settings

ADMIN, RUNNER = "bench-admin-token-0123456789", "bench-runner-token-0123456789"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def episode_bytes(runner: str, seq: int, decision_id: int) -> bytes:
    rng = np.random.default_rng(seq)
    return json.dumps({
        "runner": runner, "seq": seq, "policy_kind": "mf", "policy_version": 0,
        "decision_id": decision_id,
        "observations": rng.normal(size=(41, 21)).astype(np.float32).tolist(),
        "actions": rng.uniform(-1, 1, size=(40, 9)).astype(np.float32).tolist(),
        "rewards": rng.normal(size=40).astype(np.float32).tolist(),
        "timestamps": (np.arange(41) * 0.1).tolist(),
        "timing": {"period_mean_s": 0.1, "missed_deadlines": 0},
    }).encode()


class Database:
    """A schema of its own on PostgreSQL (dropped at the end), or a temp SQLite file."""

    def __init__(self, url: str):
        self.base = Settings(database_url=url, dev=True).database_url
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"
        if self.base.startswith("sqlite"):
            self.tmp = tempfile.TemporaryDirectory()
            self.url = f"sqlite:///{Path(self.tmp.name) / 'bench.db'}"
        else:
            with sa.create_engine(self.base).begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
            self.url = sa.engine.make_url(self.base).update_query_dict(
                {"options": f"-csearch_path={self.schema}"}).render_as_string(hide_password=False)
        migrate.upgrade(self.url)

    def drop(self) -> None:
        if self.base.startswith("sqlite"):
            self.tmp.cleanup()
            return
        engine = sa.create_engine(self.base)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        engine.dispose()


def start_service(url: str, workers: int, trainer: str = "none"
                  ) -> tuple[subprocess.Popen, str, list[subprocess.Popen]]:
    """`dclaw serve` (with its trainer when `trainer` is "serve"), and a `dclaw trainer`
    process beside it when `trainer` is "separate"."""
    port = free_port()
    env = {**os.environ, "DCLAW_DATABASE_URL": url, "DCLAW_ADMIN_TOKEN": ADMIN,
           "DCLAW_RUNNER_TOKEN": RUNNER, "DCLAW_TORCH_THREADS": "1"}
    dclaw = Path(sys.executable).parent / "dclaw"
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen(
        [str(dclaw), "serve", "--port", str(port), "--workers", str(workers)]
        + ([] if trainer == "serve" else ["--no-trainer"]), **quiet)
    others = [subprocess.Popen([str(dclaw), "trainer"], **quiet)] if trainer == "separate" else []
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process, timeout=60)
    except RuntimeError:
        for p in (process, *others):
            p.kill()
        raise
    return process, base, others


def prepare_run(base: str, url: str, trainer: str = "none") -> tuple[int, int]:
    """A started cpu-small run and the gate decision the uploads name. With no trainer, one
    policy and decision are stored directly; with one, the trainer's first decision is used
    (async mode: from then on it learns from every upload, on the same 2 cores)."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    run = httpx.post(f"{base}/api/v1/runs", headers=admin, json={
        "name": "bench", "preset": "cpu-small",
        "mode": "sync" if trainer == "none" else "async"}).json()
    httpx.post(f"{base}/api/v1/runs/{run['id']}/start", headers=admin).raise_for_status()
    if trainer != "none":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = httpx.post(f"{base}/api/v1/runs/{run['id']}/assignments",
                             headers={"Authorization": f"Bearer {RUNNER}"},
                             json={"runner": "bench-probe", "seq": 0})
            if got.status_code == 200:
                return run["id"], got.json()["decision_id"]
            time.sleep(0.2)
        raise RuntimeError("the trainer gave no first assignment in 120 s")
    engine = make_engine(url, pool_size=1)
    data = b"a policy document"
    with transaction(make_session_factory(engine)) as session:
        learning.add_snapshot(session, run_id=run["id"], kind="mf", version=0, data=data,
                              sha256=hashlib.sha256(data).hexdigest(), header={},
                              trainer="bench")
        decision = learning.add_decision(session, run_id=run["id"], episodes_seen=0, record={
            "choice": "mf", "reason": "warm-up", "mf_version": 0, "mb_version": 0},
            trainer="bench")
        decision_id = decision.id
    engine.dispose()
    return run["id"], decision_id


def count_episodes(url: str, run_id: int, learnt: bool = False) -> int:
    """The run's stored episodes, or those a trainer has learnt from so far."""
    engine = make_engine(url, pool_size=1)
    where = " AND train_index IS NOT NULL" if learnt else ""
    with engine.connect() as conn:
        count = conn.execute(sa.text(f"SELECT count(*) FROM episodes WHERE run_id = :r{where}"),
                             {"r": run_id}).scalar_one()
    engine.dispose()
    return count


class HttpxClient:
    """One keep-alive connection through httpx (what the runner uses)."""

    def __init__(self, base: str):
        self.http = httpx.Client(base_url=base, timeout=30)

    def request(self, method: str, path: str, body: bytes | None,
                headers: dict[str, str]) -> tuple[int, str]:
        got = self.http.request(method, path, content=body, headers=headers)
        return got.status_code, got.text

    def close(self) -> None:
        self.http.close()


class StdlibClient:
    """One keep-alive connection through http.client: far less client CPU per request."""

    def __init__(self, base: str):
        url = httpx.URL(base)
        self.conn = http.client.HTTPConnection(url.host, url.port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None,
                headers: dict[str, str]) -> tuple[int, str]:
        self.conn.request(method, path, body=body, headers=headers)
        got = self.conn.getresponse()
        return got.status, got.read().decode(errors="replace")

    def close(self) -> None:
        self.conn.close()


CLIENTS = {"httpx": HttpxClient, "stdlib": StdlibClient}


def ingest(base: str, run_id: int, decision_id: int, clients: int, episodes: int,
           warmup: int = 2, rate: float = 0.0, client_kind: str = "httpx",
           trivial: bool = False, service_pid: int | None = None,
           trainer_pids: list[int] = ()):
    """Each client uploads `warmup` episodes (not timed: connections, pools, threads warm up)
    and then `episodes` timed ones: back to back (closed loop) when `rate` is 0, else on a
    schedule that offers `rate` episodes/s in all, staggered across clients (open loop, like a
    fleet of robots). On a schedule, latency counts from the planned send time, so a request
    held up behind a slow one is charged its wait (no coordinated omission). `trivial`: GET
    /healthz instead of each upload (expects 200). Returns the seconds, the latencies, the
    failures and the CPU seconds of the service process (`service_pid`), of this one and of the
    trainer processes (`trainer_pids`) while the timed requests ran."""
    bodies = {(c, s): episode_bytes(f"robot-{c}", s, decision_id)
              for c in range(clients) for s in range(warmup + episodes)}
    latencies: list[float] = []
    failures: list[str] = []
    barrier = threading.Barrier(clients + 1)
    # This process holds ~150k objects (numpy, SQLAlchemy, the service's modules): a full
    # garbage collection stops every client thread for 50-90 ms and showed in the p99 as if the
    # service were slow. Frozen objects are never scanned again.
    gc.collect()
    gc.freeze()

    def client(c: int) -> None:
        headers = {"Authorization": f"Bearer {RUNNER}", "Content-Type": "application/json"}
        http = CLIENTS[client_kind](base)
        try:
            t0 = 0.0
            for s in range(warmup + episodes):
                if s == warmup:
                    barrier.wait()
                    t0 = time.perf_counter()
                start = time.perf_counter()
                if rate and s >= warmup:
                    start = t0 + ((s - warmup) * clients + c) / rate
                    time.sleep(max(0.0, start - time.perf_counter()))
                if trivial:
                    status, text = http.request("GET", "/healthz", None, {})
                else:
                    status, text = http.request(
                        "POST", f"/api/v1/runs/{run_id}/episodes", bodies[(c, s)],
                        {**headers, "Idempotency-Key": str(uuid.uuid4())})
                if s >= warmup:
                    latencies.append(time.perf_counter() - start)
                if status != (200 if trivial else 201):
                    failures.append(f"{status} {text[:200]}")
        finally:
            http.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    trainer_cpu = sum(cpu_seconds(pid) or 0.0 for pid in trainer_pids)
    start, cpu = time.perf_counter(), (cpu_seconds(service_pid), time.process_time())
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    service = cpu_seconds(service_pid)
    cpu = (None if service is None else service - cpu[0], time.process_time() - cpu[1],
           sum(cpu_seconds(pid) or 0.0 for pid in trainer_pids) - trainer_cpu)
    return seconds, latencies, failures, cpu


def child_pids(pid: int) -> list[int]:
    """The children of a process (Linux; none elsewhere): `dclaw serve`'s trainer."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (Linux; None elsewhere)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assignments(base: str, run_id: int, count: int) -> list[float]:
    latencies = []
    headers = {"Authorization": f"Bearer {RUNNER}"}
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(count + 20):
            start = time.perf_counter()
            got = http.post(f"/api/v1/runs/{run_id}/assignments", headers=headers,
                            json={"runner": "latency-probe", "seq": 0})
            if i >= 20:  # the first ones warm the connection and the caches
                latencies.append(time.perf_counter() - start)
            got.raise_for_status()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get(
        "DCLAW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=40, help="per client")
    parser.add_argument("--assignments", type=int, default=500)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offered episodes/s in all (0: each client back to back)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="httpx",
                        help="the client threads' HTTP library")
    parser.add_argument("--trainer", choices=("none", "serve", "separate"), default="none",
                        help="a training run beside the uploads: trained inside `dclaw serve`, "
                        "or by a separate `dclaw trainer` process (default: none, no learning)")
    parser.add_argument("--trivial", action="store_true",
                        help="GET /healthz instead of uploads: the clients' and framework's floor")
    args = parser.parse_args()

    db = Database(args.database_url)
    process, base, others = start_service(db.url, args.workers, args.trainer)
    try:
        run_id, decision_id = prepare_run(base, db.url, args.trainer)
        learnt_before = count_episodes(db.url, run_id, learnt=True)
        trainers = ([p.pid for p in others] if args.trainer == "separate"
                    else child_pids(process.pid) if args.trainer == "serve" else [])
        seconds, latencies, failures, (service_cpu, client_cpu, trainer_cpu) = ingest(
            base, run_id, decision_id, args.clients, args.episodes, rate=args.rate,
            client_kind=args.client, trivial=args.trivial,
            service_pid=process.pid if args.workers == 1 else None, trainer_pids=trainers)
        learnt_during = count_episodes(db.url, run_id, learnt=True) - learnt_before
        stored = count_episodes(db.url, run_id)
        sent = args.clients * (args.episodes + 2)  # with the warm-up uploads
        size_kib = len(episode_bytes("robot-0", 0, decision_id)) / 1024
        print(f"database: {sa.engine.make_url(db.url).get_backend_name()}, {args.workers} "
              f"uvicorn process(es), trainer: {args.trainer}; "
              f"episode body {size_kib:.0f} KiB of JSON")
        timed = args.clients * args.episodes
        offered = f"offered {args.rate:.0f}/s" if args.rate else "back to back"
        what = "GET /healthz (trivial)" if args.trivial else "ingest"
        print(f"{what} ({offered}, {args.client} clients): {args.clients} clients x "
              f"{args.episodes} episodes = {timed} in {seconds:.2f} s -> "
              f"{timed / seconds:.0f} episodes/s (after 2 warm-up each)")
        print(f"  latency p50 {1000 * percentile(latencies, 50):.1f} ms, "
              f"p99 {1000 * percentile(latencies, 99):.1f} ms, "
              f"max {1000 * max(latencies):.1f} ms")
        if service_cpu is not None:
            print(f"  CPU per request: service {1000 * service_cpu / timed:.2f} ms, "
                  f"clients {1000 * client_cpu / timed:.2f} ms")
        if args.trainer != "none":
            # It commits what it learnt once per step of DCLAW_TRAINER_BATCH_EPISODES: a
            # short phase can end before its first commit while it learns all along.
            print(f"  the trainer used {trainer_cpu:.1f} CPU-s ({100 * trainer_cpu / seconds:.0f}% "
                  f"of a core) and committed {learnt_during} learnt episodes meanwhile")
        print(f"  rows stored {stored} of {0 if args.trivial else sent} sent; "
              f"failures {len(failures)}" + (f" (first: {failures[0]})" if failures else ""))
        lat = assignments(base, run_id, args.assignments)
        if lat:
            print(f"assignments (ready, one client, sequential): {len(lat)} requests, "
                  f"p50 {1000 * statistics.median(lat):.1f} ms, "
                  f"p99 {1000 * percentile(lat, 99):.1f} ms")
    finally:
        for p in (*others, process):
            p.terminate()
            p.wait(timeout=60)
        db.drop()


if __name__ == "__main__":
    main()
