"""7. Many sockets: 5,000 WebSocket clients on one gateway process; its memory, and every event to every client."""

from __future__ import annotations

import asyncio
import random

from bench.harness import Harness
from bench.procs import raise_fd_limit
from bench.report import Column, Section
from bench.rss import peak_rss_mb, rss_mb
from bench.scenarios.live_latency import submit
from bench.stats import median, ms, percentile
from bench.wsclients import Audience, Changer, fan_out


async def run(h: Harness) -> Section:
    s = h.sizes
    section = Section(
        "sockets",
        f"7. Many sockets: {s.many_sockets} WebSocket clients on one gateway process",
        [
            Column("clients", "sockets", "{:d}"),
            Column("connect_s", "connect s", "{:.1f}"),
            Column("rss_idle", "gateway RSS idle MB", "{:.0f}"),
            Column("rss_open", "RSS with sockets MB", "{:.0f}"),
            Column("kb_per_socket", "KB/socket", "{:.1f}"),
            Column("rss_peak", "peak RSS MB", "{:.0f}"),
            Column("p50", "p50 ms", "{:.1f}"),
            Column("p99", "p99 ms", "{:.1f}"),
            Column("delivered", "delivered"),
        ],
    )
    fd_limit = raise_fd_limit()
    p50: list[float | None] = []
    p99: list[float | None] = []
    expected = delivered = 0
    async with h.scope() as scope:
        gateway = await scope.gateway(h.ifcflow_env())
        job_id = await submit(gateway.url)
        await asyncio.sleep(0.5)
        idle = rss_mb(gateway.proc.pid)
        async with Audience(gateway.url, job_id, s.many_sockets, connect_concurrency=200) as audience:
            await asyncio.sleep(0.5)
            opened = rss_mb(gateway.proc.pid)
            changer = Changer(h.redis, job_id)
            for _ in range(h.rounds):
                lat: list[float] = []
                for _ in range(s.many_events):
                    change = await fan_out(audience, changer, within=30)
                    lat += ms(change.arrivals)
                    expected += s.many_sockets
                    delivered += len(change.arrivals)
                    await asyncio.sleep(random.uniform(0.05, 0.1))
                p50.append(percentile(lat, 50))
                p99.append(percentile(lat, 99))
            peak = peak_rss_mb(gateway.proc.pid)
            connect_s = audience.connect_s
    section.rows.append({
        "clients": s.many_sockets,
        "connect_s": connect_s,
        "rss_idle": idle,
        "rss_open": opened,
        "kb_per_socket": None if idle is None or opened is None else (opened - idle) * 1024 / s.many_sockets,
        "rss_peak": peak,
        "p50": median(p50),
        "p99": median(p99),
        "delivered": f"{delivered}/{expected}",
    })
    ok = peak is not None and peak < 300 and delivered == expected
    section.targets.append(f"RSS under 300 MB, every client receives every event: {h.judge(ok)}")
    section.notes.append(
        f"all sockets follow one job; {s.many_events} changes per round, each waited for at every socket; "
        f"open-file limit {fd_limit} (raised by the bench, inherited by the gateway); clients (bench/lightws.py) "
        "run in the bench process, so their own receive time is part of the latency"
    )
    return section
