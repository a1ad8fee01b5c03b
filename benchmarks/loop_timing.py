"""The runner's 10 Hz loop timing on the sim backend and over the emulated Dynamixel bus, and its
idle time between episodes, against a real local service.

A `dclaw serve` process (SQLite, its trainer, a cpu-small run with small learner budgets, sync
or async mode) feeds an in-process `Runner`, paced at 10 Hz. Per backend it prints, over every
tick of every episode: the period error (how late each tick started against its absolute
deadline), the compute time per tick (read, policy, write; wall clock, waiting on the bus
included), p50/p99/max, and the loop thread's own CPU time in it (`time.thread_time`: the
runner's work without the wire); overruns; the idle time between episodes (assignment + policy
fetch, `assign_s`) and the reset time. For the bus, the wire-time floor of one tick (the bytes of
one bulk read and its ten replies, and one sync write, at the baud rate) is printed beside it:
the peer that no implementation can beat.

    python -m benchmarks.loop_timing [--backend sim|dynamixel|all] [--episodes 15]
        [--baud 1000000] [--mode sync|async] [--read-block-ms 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from dclaw.service_process import free_port, wait_ready
from robot.dynamixel import TEMP_RANGE
from robot.runner import Runner, RunnerConfig

ADMIN, RUNNER = "bench-admin-token-0123456789", "bench-runner-token-0123456789"
FAST = {"warmup_episodes": 2, "sac__updates_per_episode": 5, "sac__batch_size": 64,
        "dynamics__updates_per_episode": 3, "mb_policy__updates_per_episode": 2,
        "mb_policy__num_masks": 2, "mb_policy__rollouts_per_mask": 2, "gate__num_masks": 8,
        "gate__rollouts_per_mask": 2}
DCLAW = str(Path(sys.executable).parent / "dclaw")


def start_service(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "DCLAW_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
           "DCLAW_ADMIN_TOKEN": ADMIN, "DCLAW_RUNNER_TOKEN": RUNNER, "DCLAW_TORCH_THREADS": "1"}
    subprocess.run([DCLAW, "db", "upgrade"], env=env, check=True, capture_output=True)
    log = workdir / "serve.log"
    process = subprocess.Popen([DCLAW, "serve", "--port", str(port)], env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process, timeout=60, log=log)
    return process, url


def new_run(url: str, name: str, mode: str) -> int:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    run = httpx.post(f"{url}/api/v1/runs", headers=auth, json={
        "name": name, "algorithm": "unified", "preset": "cpu-small", "mode": mode,
        "overrides": FAST}).json()
    httpx.post(f"{url}/api/v1/runs/{run['id']}/start", headers=auth).raise_for_status()
    return run["id"]


def wire_floor_ms(baud: int, bus_read: str) -> float:
    """Bytes on the wire per tick (10 bits each) that the runner waits for: the read instruction
    and its replies (Bulk Read: 10 + 5 per motor out, 11 + 10 back per motor, and for the motor
    whose temperature it carries 11 more; Fast Sync Read: 14 + 1 per motor out, one reply of 11
    + 14 per motor, its temperature read every tenth tick left out). The sync write is sent, not
    waited for."""
    n = 10
    if bus_read == "bulk":
        return (10 + 5 * n + n * 21 + TEMP_RANGE - 10) * 10 / baud * 1e3
    return (14 + n + 11 + 14 * n) * 10 / baud * 1e3


def measure(backend_name: str, url: str, episodes: int, baud: int, workdir: Path,
            mode: str, read_block_ms: float, realtime: int | None = None) -> dict:
    emulator = None
    if backend_name == "sim":
        from sim.backend import SimBackend

        backend = SimBackend(seed=0)
    else:
        from robot.dynamixel import DynamixelBackend
        from sim.emulator_process import EmulatorProcess

        rt = ["--realtime-priority", str(realtime)] if realtime else []
        emulator = EmulatorProcess("--baud", str(baud), *rt)
        backend = DynamixelBackend(emulator.port, baud, bus_read=backend_name.split(":")[1],
                                   read_block_s=read_block_ms / 1e3)
    run_id = new_run(url, f"loop-{backend_name}-{time.time_ns()}", mode)
    config = RunnerConfig(learner_url=url, run_id=run_id,
                          name=f"bench-{backend_name.replace(':', '-')}",
                          token=RUNNER, episodes=episodes, spool_dir=workdir / "spool",
                          seed=0, realtime_priority=realtime)
    try:
        runner = Runner(config, backend)
        code = runner.run()
    finally:
        if emulator is not None:
            emulator.close()
    if code != 0:
        raise SystemExit(f"runner exited with {code}: {runner.stop_reason}")
    # Free the service's trainer slot for the next backend's run.
    httpx.post(f"{url}/api/v1/runs/{run_id}/stop", headers={"Authorization": f"Bearer {ADMIN}"})
    stored = httpx.get(f"{url}/api/v1/runs/{run_id}/episodes", params={"limit": 500}).json()
    timing = [e["timing"] for e in stored["items"]]
    late = np.concatenate([t.period_errors for t in runner.timings]) * 1e3
    work = np.concatenate([t.compute for t in runner.timings]) * 1e3
    cpu = np.concatenate([t.cpu for t in runner.timings]) * 1e3
    idle = np.array([t["assign_s"] for t in timing[1:]]) * 1e3  # the first waits for warm-up
    return {
        "backend": backend_name, "ticks": late.size,
        "late": [np.percentile(late, 50), np.percentile(late, 99), late.max()],
        "work": [np.percentile(work, 50), np.percentile(work, 99), work.max()],
        "cpu": [np.percentile(cpu, 50), np.percentile(cpu, 99)],
        "overruns": int(sum(t.overruns for t in runner.timings)),
        "idle": [np.percentile(idle, 50), np.percentile(idle, 99)],
        "reset_s": float(np.median([t["reset_s"] for t in timing])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sim", "dynamixel", "all"], default="all",
                        help="dynamixel: the emulated bus with Bulk Read, then Fast Sync Read")
    parser.add_argument("--episodes", type=int, default=15, help="41 ticks each")
    parser.add_argument("--baud", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=["sync", "async"], default="sync",
                        help="sync (Alg. 1): the trainer learns between episodes, and the idle "
                             "time includes its learning step; async: it learns while the next "
                             "episode runs, on the same 2 cores here")
    parser.add_argument("--read-block-ms", type=float, default=2.0,
                        help="dynamixel: blocking read timeout (0: the SDK's busy polling)")
    parser.add_argument("--realtime-priority", type=int, default=None,
                        help="SCHED_FIFO priority of the runner's loop and the emulator "
                             "(`dclaw run/emulate --realtime-priority`); default: normal")
    args = parser.parse_args()
    backends = {"sim": ["sim"], "dynamixel": ["dynamixel:bulk", "dynamixel:fast-sync"]}
    backends = (backends["sim"] + backends["dynamixel"] if args.backend == "all"
                else backends[args.backend])
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        service, url = start_service(workdir)
        try:
            rows = [measure(b, url, args.episodes, args.baud, workdir, args.mode,
                            args.read_block_ms, args.realtime_priority) for b in backends]
        finally:
            service.terminate()
            service.wait(30)
    priority = (f"SCHED_FIFO {args.realtime_priority}" if args.realtime_priority
                else "normal priority")
    print(f"\nloop timing at 10 Hz, {args.episodes} episodes per backend, {args.mode} run, "
          f"{priority} (ms)")
    print(f"{'backend':<20} {'ticks':>5}  {'period error p50/p99/max':>26}  "
          f"{'compute p50/p99/max':>22}  {'CPU p50/p99':>13}  {'overruns':>8}  "
          f"{'idle p50/p99':>13}  reset s")
    for r in rows:
        late, work, cpu, idle = r["late"], r["work"], r["cpu"], r["idle"]
        print(f"{r['backend']:<20} {r['ticks']:>5}  {late[0]:8.3f} {late[1]:8.3f} {late[2]:8.3f}"
              f"  {work[0]:6.3f} {work[1]:7.3f} {work[2]:7.3f}  {cpu[0]:6.3f} {cpu[1]:6.3f}"
              f"  {r['overruns']:>8}  "
              f"{idle[0]:6.1f} {idle[1]:6.1f}  {r['reset_s']:7.2f}")
        if r["backend"].startswith("dynamixel"):
            floor = wire_floor_ms(args.baud, r["backend"].split(":")[1])
            print(f"  wire-time floor per tick at {args.baud} baud: {floor:.3f} ms; compute p50 "
                  f"is {work[0] / floor:.2f}x the floor")


if __name__ == "__main__":
    main()
