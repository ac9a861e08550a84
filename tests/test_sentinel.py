"""Redis through Sentinel: gateway, live status and worker find the master by name."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
import redis

from tests.conftest import API_KEY, CONVERT, free_port, start_redis, start_worker, submit, until, wait_for


@pytest.fixture
def sentinel_env(env, tmp_path):
    """A master of our own and one sentinel watching it; the URL's host points nowhere on purpose."""
    master_port, sentinel_port = free_port(), free_port()
    master = start_redis(master_port, tmp_path, "--appendonly", "no")
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds mymaster 5000\n"
    )
    sentinel = subprocess.Popen([shutil.which("redis-server"), str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=sentinel_port)
    wait_for(lambda: _master_known(client), what="sentinel")
    env["IFCFLOW_REDIS_URL"] = "redis://unused-host:1/0"
    env["IFCFLOW_REDIS_SENTINELS"] = f"127.0.0.1:{sentinel_port}"
    yield redis.Redis(port=master_port)
    for proc in (sentinel, master):
        proc.terminate()
        proc.wait(10)


def _master_known(client: redis.Redis) -> bool:
    try:
        return client.sentinel_get_master_addr_by_name("mymaster") is not None
    except redis.ConnectionError:
        return False


async def test_a_job_runs_end_to_end_through_sentinel(sentinel_env, env, tmp_path, gateway, stub):
    master = sentinel_env
    worker = start_worker(env, tmp_path / "worker.log", master)
    try:
        async with httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": API_KEY}, timeout=10) as api:
            health = (await api.get("/health")).json()
            assert health["redis"]["ok"] and health["live_status"] == "keyspace"
            job_id = await submit(api, body=CONVERT)
            view = await until(api, job_id)
            assert view["status"] == "complete"
        # The job's records are on the master the sentinel named (whatever the keys are called).
        assert any(master.scan_iter(match=f"*{job_id}*"))
    finally:
        worker.stop()
