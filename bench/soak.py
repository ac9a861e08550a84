"""Soak: the chaos test (``tests/test_chaos.py``), for as long as you like.

    python -m bench.soak --minutes 30

Submits jobs at a steady rate to a stand-in service on loopback while a random worker is SIGKILLed
every few seconds (a replacement starts at once), Redis restarts every few minutes (AOF, fsync
always) and so does the gateway. At the end every job must be ``complete`` with its own result; the
summary says how many ran twice and how fast killed jobs started again. Exit status 1 otherwise.
Everything runs on 127.0.0.1 and stops by itself; process logs stay in ``--workdir``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tests.test_chaos import ChaosConfig, run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to keep submitting (default 10)")
    parser.add_argument("--rate", type=float, default=8.0, help="jobs submitted per second (default 8)")
    parser.add_argument("--workers", type=int, default=3, help="workers alive at the start (default 3)")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between worker kills (default 4)")
    parser.add_argument("--restart-every", type=float, default=300.0,
                        help="seconds between Redis restarts, and between gateway restarts (default 300)")
    parser.add_argument("--redis-down", type=float, default=2.0, help="seconds Redis stays down (default 2)")
    parser.add_argument("--min-latency", type=float, default=0.2, help="stand-in service latency, low end")
    parser.add_argument("--max-latency", type=float, default=1.0, help="stand-in service latency, high end")
    parser.add_argument("--workdir", type=Path, default=None, help="where logs and Redis data go (default: temp)")
    args = parser.parse_args(argv)

    seconds = args.minutes * 60
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ifcflow-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    first = min(20.0, seconds / 3)
    redis_restarts = [t for t in _every(first, args.restart_every, seconds)]
    gateway_restarts = [t for t in _every(first * 2, args.restart_every, seconds)]
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:7.0f} s] {line}", flush=True)

    config = ChaosConfig(
        workdir=workdir,
        jobs=max(1, int(seconds * args.rate)),
        rate=args.rate,
        workers=args.workers,
        kill_every=args.kill_every,
        redis_restarts=redis_restarts,
        gateway_restarts=gateway_restarts,
        redis_down_for=args.redis_down,
        latency=(args.min_latency, args.max_latency),
        drain_timeout=max(90.0, seconds / 4),
        progress=progress,
    )
    progress(f"soak for {args.minutes:g} min: {config.jobs} jobs at {args.rate:g}/s, a worker killed every "
             f"{args.kill_every:g} s, Redis restarts at {_at(redis_restarts)}, gateway at {_at(gateway_restarts)}; "
             f"logs in {workdir}")
    report, _logs = asyncio.run(run_chaos(config))
    print(report.summary(), flush=True)
    if not report.ok():
        print(f"FAILED: not complete {report.not_complete}, wrong result {report.wrong_result}, "
              f"never called {report.never_called}", file=sys.stderr)
        return 1
    return 0


def _every(first: float, period: float, until: float) -> list[float]:
    times, t = [], first
    while t < until:
        times.append(t)
        t += period
    return times


def _at(times: list[float]) -> str:
    return ", ".join(f"{t:.0f} s" for t in times) or "never"


if __name__ == "__main__":
    raise SystemExit(main())
