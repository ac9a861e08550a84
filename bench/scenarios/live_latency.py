"""6. Live status latency: a job's state change in Redis to the message at 1, 100, 1,000 WebSocket clients,
against clients polling ``GET /jobs/{id}`` once a second (what the RQ system's clients did)."""

from __future__ import annotations

import asyncio
import json
import random
import time

from bench.harness import API_KEY, Harness
from bench.jobs import CONVERT
from bench.loadgen import Connection, get_request, json_request
from bench.procs import BenchError
from bench.report import Column, Section
from bench.stats import median, ms, percentile
from bench.wsclients import Audience, Changer, fan_out, job_of

POLL_PERIOD_S = 1.0


async def submit(gateway_url: str) -> str:
    """A real job, left queued (no worker runs in these scenarios), for the clients to follow."""
    raw = json_request(gateway_url, "/ifcconvert", {**CONVERT, "input_filename": "model.ifc"}, {"X-API-Key": API_KEY})
    async with Connection(gateway_url) as conn:
        status, body = await conn.send(raw)
    if status != 202:
        raise BenchError(f"POST /ifcconvert answered {status}: {body[:200]!r}")
    return job_of(body)


async def _ws_level(h: Harness, gateway_url: str, clients: int) -> dict[str, object]:
    job_id = await submit(gateway_url)
    changer = Changer(h.redis, job_id)
    p50: list[float | None] = []
    p99: list[float | None] = []
    pooled: list[float] = []
    expected = delivered = 0
    async with Audience(gateway_url, job_id, clients) as audience:
        for _ in range(h.rounds):
            lat: list[float] = []
            for _ in range(h.sizes.ws_events):
                change = await fan_out(audience, changer)
                lat += ms(change.arrivals)
                expected += clients
                delivered += len(change.arrivals)
                await asyncio.sleep(random.uniform(0.02, 0.05))
            pooled += lat
            p50.append(percentile(lat, 50))
            p99.append(percentile(lat, 99))
    return {
        "case": f"WebSocket /jobs/{{id}}/ws, {clients} client(s)",
        "clients": clients,
        "samples": len(pooled),
        "p50": median(p50),
        "p99": median(p99),
        "max": max(pooled, default=None),
        "delivered": f"{delivered}/{expected}",
        "raw": pooled,
    }


async def _pollers(h: Harness, gateway_url: str) -> dict[str, object]:
    """Clients polling once a second at random phases; changes spaced over a second so none is skipped."""
    s = h.sizes
    job_id = await submit(gateway_url)
    changer = Changer(h.redis, job_id)
    written: dict[float, float] = {}
    seen: list[float] = []
    stop = asyncio.Event()
    raw = get_request(gateway_url, f"/jobs/{job_id}", {"X-API-Key": API_KEY})

    async def poller() -> None:
        last: float | None = None
        async with Connection(gateway_url) as conn:
            await asyncio.sleep(random.uniform(0, POLL_PERIOD_S))
            tick = time.perf_counter()
            while not stop.is_set():
                status, body = await conn.send(raw)
                at = time.perf_counter()
                if status != 200:
                    raise BenchError(f"GET /jobs/{{id}} answered {status}")
                progress = json.loads(body).get("progress")
                percent = float(progress["percent"]) if progress else None
                if percent != last and percent in written:
                    seen.append(at - written[percent])
                last = percent
                tick += POLL_PERIOD_S
                await asyncio.sleep(max(0.0, tick - time.perf_counter()))

    tasks = [asyncio.create_task(poller()) for _ in range(s.poll_clients)]
    await asyncio.sleep(POLL_PERIOD_S + 0.1)  # every poller has polled once
    for _ in range(s.poll_events):
        percent = changer.next_percent()
        written[percent] = time.perf_counter()
        await changer.write(percent)
        await asyncio.sleep(random.uniform(1.05, 1.5) * POLL_PERIOD_S)
    stop.set()
    await asyncio.gather(*tasks)
    lat = ms(seen)
    return {
        "case": f"polling GET /jobs/{{id}} every {POLL_PERIOD_S:g} s",
        "clients": s.poll_clients,
        "samples": len(lat),
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": max(lat, default=None),
        "delivered": f"{len(lat)}/{s.poll_clients * s.poll_events}",
        "raw": lat,
    }


async def run(h: Harness) -> Section:
    section = Section(
        "live",
        "6. Live status: state change written to Redis -> message at the client",
        [
            Column("case", "client"),
            Column("clients", "clients", "{:d}"),
            Column("samples", "samples", "{:d}"),
            Column("p50", "p50 ms", "{:.2f}"),
            Column("p99", "p99 ms", "{:.2f}"),
            Column("max", "max ms", "{:.1f}"),
            Column("delivered", "delivered"),
        ],
    )
    async with h.scope() as scope:
        gateway = await scope.gateway(h.ifcflow_env())
        for clients in h.sizes.ws_clients:
            row = await _ws_level(h, gateway.url, clients)
            section.raw[str(row["case"])] = row.pop("raw")
            section.rows.append(row)
        row = await _pollers(h, gateway.url)
        section.raw[str(row["case"])] = row.pop("raw")
        section.rows.append(row)
    top = max(h.sizes.ws_clients)
    last = next(r for r in section.rows if r["clients"] == top)
    p99 = last["p99"]
    section.targets.append(
        f"p99 under 20 ms at {top} clients on loopback: {h.judge(isinstance(p99, float) and p99 < 20)}"
    )
    section.notes.append(
        "every client follows the same job; a change is a new progress value HSET on ifcflow:job:<id> (as the "
        "worker writes it), timed from just before the HSET to the message's arrival in the bench process, "
        "which runs all clients on one event loop; the clients are bench/lightws.py, a minimal RFC 6455 client "
        "costing a few us per message (the websockets library's ~40 us per message would put ~40 ms of client "
        "CPU into every change at 1,000 clients, measuring the client instead of the gateway); no "
        "permessage-deflate (the gateway has it off); "
        f"{h.sizes.ws_events} changes per round; pollers start at random phases, changes come 1.05-1.5 s apart"
    )
    return section
