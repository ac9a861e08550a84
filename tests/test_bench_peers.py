"""The bench's peers (Celery prefork and threads, SAQ): each runs the bench's job against the stand-in
service on the bench's own Redis, the bench sees every job end, and a failed job fails the round.

Each peer's test skips when its package is not installed (``pip install 'celery[redis]' saq``).
No timing is asserted.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import aiohttp
import pytest

from bench.cli import parse
from bench.harness import Harness
from bench.peers.drivers import ALL, KEYS, Peer, select
from bench.peers.measure import timed_round
from bench.procs import BenchError
from bench.sizes import QUICK


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _peer(key: str) -> Peer:
    return next(p for p in ALL if p.key == key)


@pytest.mark.parametrize("key", KEYS)
async def test_peer_runs_the_same_call_and_a_failed_job_fails_the_round(key: str, tmp_path: Path) -> None:
    peer = _peer(key)
    pytest.importorskip(peer.module, reason=f"the {peer.label} baseline needs {peer.module}")
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server not found on PATH (apt-get install redis-server)")
    async with Harness(tmp_path, QUICK, 1, True, (key,)) as h, h.scope() as scope:
        url = await scope.stub(0.0)
        fleet = await peer.start(scope, 1, 2)
        assert fleet.job_processes == (2 if peer.one_job_per_process else 1)
        async with peer.watcher(h) as watcher:
            done = await timed_round(h, peer, watcher, url, 5, concurrency=2, within=60)
            assert done.seconds > 0 and done.cmds_job > 0
            async with aiohttp.ClientSession() as session, session.get(f"{url}/bench/stats") as resp:
                assert (await resp.json())["calls"] == 5  # one POST per job, to the stand-in service
            # Nothing listens on port 9: the job's call fails, and so does the round.
            with pytest.raises(BenchError, match="1 of 1 jobs failed"):
                await timed_round(h, peer, watcher, "http://127.0.0.1:9", 1, within=60)
        if peer.one_job_per_process:
            assert fleet.child_rss_mb()
        assert fleet.peak_rss_mb() > 0


def test_peers_not_installed_are_skipped_with_a_note() -> None:
    class Missing(Peer):
        key = "missing"
        label = "Missing"
        module = "no_such_module_for_the_bench"

    chosen, notes = select(["missing", "saq"], [Missing(), *ALL])
    assert "missing" not in [p.key for p in chosen]
    assert notes[0] == "Missing: not installed (no_such_module_for_the_bench), not measured"
    installed, _ = select(KEYS)
    assert [p.key for p in installed] == [p.key for p in ALL if _importable(p.module)]


def test_cli_chooses_peers() -> None:
    assert parse([]).peers == KEYS
    assert parse(["--peers", "none"]).peers == ()
    assert parse(["throughput", "--peers", "saq"]).peers == ("saq",)
    with pytest.raises(SystemExit):
        parse(["--peers", "dramatiq"])
