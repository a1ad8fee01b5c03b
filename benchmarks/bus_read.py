"""One tick's bus work on the emulated Dynamixel bus, without a service: 300 reads (and goal
writes) paced at 10 Hz through dynamixel-sdk, after the scripted reset.

    python -m benchmarks.bus_read [--baud 1000000] [--bus-read bulk|fast-sync] [--read-block-ms 2]

Prints the read's p50/p90/p99/max and the write's p50/p99 in ms; run it with --read-block-ms 0
(the SDK's busy polling) beside the default to compare.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from robot.dynamixel import DynamixelBackend
from robot.safety import SafetyLimits
from sim.emulator_process import EmulatorProcess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baud", type=int, default=1_000_000)
    parser.add_argument("--bus-read", choices=["bulk", "fast-sync"], default="bulk")
    parser.add_argument("--read-block-ms", type=float, default=2.0)
    parser.add_argument("--ticks", type=int, default=300)
    args = parser.parse_args()
    reads, writes = [], []
    with EmulatorProcess("--baud", str(args.baud)) as emulator:
        robot = DynamixelBackend(emulator.port, args.baud, bus_read=args.bus_read,
                                 read_block_s=args.read_block_ms / 1e3,
                                 limits=SafetyLimits(max_failed_reads=10))
        robot.connect()
        robot.reset()
        due = time.monotonic()
        for _ in range(args.ticks):
            due += 0.1
            while time.monotonic() < due:
                time.sleep(0.0005)
            start = time.perf_counter()
            state = robot.read()
            read = time.perf_counter()
            robot.write(state.qpos)
            reads.append(read - start)
            writes.append(time.perf_counter() - read)
        robot.close()
    r, w = np.array(reads) * 1e3, np.array(writes) * 1e3
    print(f"{args.bus_read} at {args.baud} baud, read block {args.read_block_ms} ms: read p50 "
          f"{np.percentile(r, 50):.2f} p90 {np.percentile(r, 90):.2f} p99 "
          f"{np.percentile(r, 99):.2f} max {r.max():.2f} ms | write p50 "
          f"{np.percentile(w, 50):.2f} p99 {np.percentile(w, 99):.2f} ms")


if __name__ == "__main__":
    main()
