"""3. Gateway: requests/s and latency of POST /ifcconvert vs a constant route in the same uvicorn process."""

from __future__ import annotations

from bench.gateway_app import CONSTANT_PATH
from bench.harness import API_KEY, Harness
from bench.jobs import CONVERT
from bench.loadgen import closed_loop, json_request
from bench.procs import BenchError
from bench.report import Column, Section
from bench.stats import median, ms, percentile, ratio

BODY = {**CONVERT, "input_filename": "model.ifc"}


async def _level(h: Harness, url: str, path: str, clients: int, expect: int) -> dict[str, float | None]:
    raw = json_request(url, path, BODY, {"X-API-Key": API_KEY})
    rps: list[float] = []
    p50: list[float | None] = []
    p99: list[float | None] = []
    for _ in range(h.rounds):
        result = await closed_loop(url, raw, clients, h.sizes.gateway_seconds, expect)
        if result.errors:
            raise BenchError(f"{result.errors} of {result.requests} requests to {path} were not {expect}")
        lat = ms(result.latencies)
        rps.append(result.rps)
        p50.append(percentile(lat, 50))
        p99.append(percentile(lat, 99))
    return {"rps": median(rps), "p50": median(p50), "p99": median(p99)}


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
            base = await _level(h, gateway.url, CONSTANT_PATH, clients, 200)
            real = await _level(h, gateway.url, "/ifcconvert", clients, 202)
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
        f"{h.sizes.gateway_seconds:g} s of load per level and round after 0.3 s warm-up; the constant route is "
        "added in bench/gateway_app.py to the real app, behind the same middleware; same JSON body to both; "
        "the load generator shares the machine's 2 cores with uvicorn and Redis"
    )
    return section
