"""3. Gateway: requests/s and latency of POST /ifcconvert vs a constant route in the same uvicorn process."""

from __future__ import annotations

from bench.gateway_app import CONSTANT_PATH
from bench.harness import API_KEY, Harness
from bench.jobs import CONVERT
from bench.loadgen import Load, LoadResult, alternating_closed_loop, json_request
from bench.procs import BenchError
from bench.report import Column, Section
from bench.stats import median, ms, percentile, ratio

BODY = {**CONVERT, "input_filename": "model.ifc"}


async def _levels(h: Harness, url: str, clients: int) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """The constant route and the submit at one client count, measured taking turns (see the loadgen)."""
    loads = [
        Load(CONSTANT_PATH, json_request(url, CONSTANT_PATH, BODY, {"X-API-Key": API_KEY}), 200),
        Load("/ifcconvert", json_request(url, "/ifcconvert", BODY, {"X-API-Key": API_KEY}), 202),
    ]
    rounds: list[list[LoadResult]] = []
    for _ in range(h.rounds):
        results = await alternating_closed_loop(url, loads, clients, h.sizes.gateway_seconds)
        for load, result in zip(loads, results, strict=True):
            if result.errors:
                raise BenchError(f"{result.errors} of {result.requests} requests to {load.name} were not {load.expect}")
        rounds.append(results)
    base, real = ({
        "rps": median([r[i].rps for r in rounds]),
        "p50": median([percentile(ms(r[i].latencies), 50) for r in rounds]),
        "p99": median([percentile(ms(r[i].latencies), 99) for r in rounds]),
    } for i in (0, 1))
    return base, real


async def run(h: Harness) -> Section:
    section = Section(
        "gateway",
        "3. Gateway: one uvicorn process, closed-loop clients on keep-alive connections",
        [
            Column("clients", "clients", "{:d}"),
            Column("route", "route"),
            Column("rps", "requests/s", "{:.0f}"),
            Column("p50", "p50 ms", "{:.2f}"),
            Column("p99", "p99 ms", "{:.2f}"),
            Column("rps_ratio", "of constant's req/s", "{:.0%}"),
            Column("p99_ratio", "p99 / constant's", "{:.1f}x"),
        ],
    )
    verdicts: list[bool] = []
    async with h.scope() as scope:
        gateway = await scope.gateway(h.ifcflow_env(), app="bench.gateway_app:app")
        for clients in h.sizes.gateway_clients:
            base, real = await _levels(h, gateway.url, clients)
            await h.flush()  # drop the queued jobs before the next level
            rps_ratio, p99_ratio = ratio(real["rps"], base["rps"]), ratio(real["p99"], base["p99"])
            section.rows.append({"clients": clients, "route": f"POST {CONSTANT_PATH} (constant)", **base})
            section.rows.append({
                "clients": clients, "route": "POST /ifcconvert", **real, "rps_ratio": rps_ratio, "p99_ratio": p99_ratio,
            })
            if rps_ratio is not None and p99_ratio is not None:
                verdicts.append(rps_ratio >= 0.5 and p99_ratio <= 2.0)
    section.targets.append(
        "POST /ifcconvert >= 50% of the constant route's requests/s and p99 <= 2x its p99, at every level: "
        + h.judge(all(verdicts) if verdicts else None)
    )
    section.notes.append(
        f"{h.sizes.gateway_seconds:g} s of load per route, level and round after 0.3 s warm-up, the two routes "
        "taking turns in blocks of 0.2 s (each on connections of its own) so that the machine's slow spells fall "
        "on both alike; the constant route is "
        "added in bench/gateway_app.py to the real app, behind the same middleware; same JSON body to both; "
        "the load generator shares the machine's 2 cores with uvicorn and Redis"
    )
    return section
