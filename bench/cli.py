"""``python -m bench [scenario ...] [--quick]``: start everything, run the scenarios, print and save tables."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.harness import Harness
from bench.peers.drivers import KEYS as PEER_KEYS
from bench.procs import REPO, BenchError, raise_fd_limit
from bench.report import Section, as_text, machine, write
from bench.sizes import FULL, QUICK

# name -> module in bench.scenarios, in the order a full run takes them.
SCENARIOS = {
    "throughput": "throughput",
    "overhead": "overhead",
    "gateway": "gateway",
    "start": "start",
    "concurrency": "concurrency",
    "live": "live_latency",
    "sockets": "many_sockets",
    "fleet": "fleet",
    "burst": "burst",
    "geometry": "geometry_cache",
    "ifc_overhead": "real_overhead",
    "fair_share": "fair_share",
}
ALIASES = {str(i): name for i, name in enumerate(SCENARIOS, start=1)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario",
        help=f"any of {', '.join(SCENARIOS)} (or 1-{len(SCENARIOS)}); default: all",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: proves the harness works")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="where JSON and Markdown go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (process logs) after the run")
    parser.add_argument(
        "--peers", default=",".join(PEER_KEYS), metavar="LIST",
        help=f"other queues measured beside ifcflow in throughput, overhead and fleet, comma-separated, "
        f"of {', '.join(PEER_KEYS)}, or 'none' (default: all; those not installed are skipped with a note)",
    )
    args = parser.parse_args(argv)
    peers = tuple(p for p in args.peers.split(",") if p and p != "none")
    bad = [p for p in peers if p not in PEER_KEYS]
    if bad:
        parser.error(f"unknown peer(s) {', '.join(bad)}; choose from {', '.join(PEER_KEYS)} or none")
    args.peers = peers
    names = [ALIASES.get(s, s) for s in args.scenarios] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = names
    return args


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run(args: argparse.Namespace, workdir: Path) -> list[Section]:
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or sizes.rounds
    sections: list[Section] = []
    async with Harness(workdir, sizes, rounds, args.quick, args.peers) as h:
        for name in args.scenarios:
            module = importlib.import_module(f"bench.scenarios.{SCENARIOS[name]}")
            runner: Callable[[Harness], Awaitable[Section]] = module.run
            await h.flush()
            started = time.perf_counter()
            print(f"-- {name} ...", file=sys.stderr, flush=True)
            section = await runner(h)
            section.raw["seconds"] = round(time.perf_counter() - started, 1)
            sections.append(section)
            print(as_text(section) + "\n", flush=True)
    return sections


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    fds = raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="ifcflow-bench-"))
    started = time.perf_counter()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            sections = runner.run(_run(args, workdir))
    except BenchError as exc:
        print(f"bench: {exc}\nbench: process logs kept in {workdir / 'logs'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bench: interrupted; process logs in {workdir / 'logs'}", file=sys.stderr)
        return 130
    meta = {
        "machine": machine(),
        "quick": args.quick,
        "rounds": args.rounds or (QUICK if args.quick else FULL).rounds,
        "scenarios": args.scenarios,
        "peers": list(args.peers),
        "fd_limit": fds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    json_path, md_path = write(sections, args.out, meta)
    print(f"bench: {meta['seconds']} s; results in {json_path} and {md_path}", file=sys.stderr)
    if args.keep:
        print(f"bench: process logs in {workdir / 'logs'}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
