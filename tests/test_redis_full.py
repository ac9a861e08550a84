"""A Redis that is full (maxmemory reached under noeviction): submits are refused by name, /health and
/metrics say so, running jobs end once memory frees, and no worker exits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import OutOfMemoryError

from tests.conftest import (
    API_KEY,
    CONVERT,
    Behaviour,
    base_env,
    eventually,
    free_port,
    reset_data_dir,
    start_gateway,
    start_redis,
    start_worker,
    until,
)

MAXMEMORY = 64 * 1024 * 1024


@contextlib.contextmanager
def full_redis_stack(tmp_path: Path, service_url: str) -> Iterator[tuple[str, redis.Redis, Any]]:
    """Redis with a small maxmemory, a gateway and a worker on it; yields (gateway url, client, worker)."""
    port = free_port()
    server = start_redis(port, tmp_path, "--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction")
    client = redis.Redis(port=port)
    env = base_env(f"redis://127.0.0.1:{port}/0", reset_data_dir(tmp_path / "data"), service_url)
    gateway = worker = None
    try:
        gateway = start_gateway(env, tmp_path / "gateway.log")
        worker = start_worker(env, tmp_path / "worker.log", client)
        yield gateway.url, client, worker
    finally:
        for proc in (worker, gateway.process if gateway else None):
            if proc is not None:
                proc.stop()
        client.close()
        server.terminate()
        server.wait(10)


def fill(client: redis.Redis) -> int:
    """Fill Redis past its limit: 2 MB of filler, then maxmemory set below what is used, so that every
    write is refused whatever else frees a few bytes meanwhile. The new maxmemory."""
    for n in range(32):
        client.set(f"filler:{n}", b"x" * 64 * 1024)
    limit = int(client.info("memory")["used_memory"]) - 512 * 1024
    client.config_set("maxmemory", limit)
    with pytest.raises(OutOfMemoryError):
        client.set("one-more", "x")
    return limit


def drain(client: redis.Redis) -> None:
    client.delete(*[f"filler:{n}" for n in range(32)])


async def test_a_full_redis_refuses_submits_by_name_and_health_and_metrics_say_so_until_it_has_room(
    tmp_path, stub
):
    stub.will("/ifcconvert", Behaviour(delay=4))  # still running when Redis fills up
    with full_redis_stack(tmp_path, stub.url) as (url, client, worker):
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEY}, timeout=30) as api:
            running = (await api.post("/ifcconvert", json=CONVERT)).json()["job_id"]
            await until(api, running, {"in_progress"})
            limit = fill(client)

            refused = await api.post("/ifcconvert", json=CONVERT)
            assert refused.status_code == 503 and "Redis is out of memory" in refused.json()["detail"]
            health = (await api.get("/health")).json()
            assert health["status"] == "degraded"
            assert health["redis"]["writable"] is False and "OutOfMemoryError" in health["redis"]["write_error"]
            assert health["redis"]["maxmemory_bytes"] == limit
            assert health["redis"]["maxmemory_policy"] == "noeviction" and health["redis"]["evicted_keys"] == 0
            samples = {s.name: s.value for f in text_string_to_metric_families((await api.get("/metrics")).text)
                       for s in f.samples}
            assert samples["ifcflow_redis_writable"] == 0 and samples["ifcflow_redis_memory_max_bytes"] == limit
            assert samples["ifcflow_redis_evicted_keys_total"] == 0

            # The running job's end cannot be written now; the worker keeps trying and stays up.
            await eventually(lambda: any(e.get("event") == "redis.write_failed" for e in worker.log_lines()))
            assert worker.alive()
            drain(client)
            view = await until(api, running, timeout=30)
            assert view["status"] == "complete" and worker.alive()
            assert (await api.get("/health")).json()["redis"]["writable"] is True
            assert (await api.post("/ifcconvert", json=CONVERT)).status_code == 202


async def test_health_reports_redis_memory_and_the_services_slots(tmp_path, stub):
    with full_redis_stack(tmp_path, stub.url) as (url, _, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            health = (await api.get("/health")).json()
    assert health["redis"]["writable"] is True and health["redis"]["used_memory_bytes"] > 0
    assert health["redis"]["maxmemory_policy"] == "noeviction"
    assert all("slots" in s for s in health["services"].values())
