"""A whole pipeline of real processes on a data directory of the test's choosing: the IFC services
(``python -m ifcservices all``), a gateway and a worker. For tests that need the data directory to be
somewhere special (a small tmpfs) or all three processes of their own."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from tests.conftest import Gateway, Process, free_port, start_gateway, start_worker, wait_for
from tests.ifcservices.live_env import live_env


@dataclass
class Pipeline:
    url: str
    gateway: Gateway
    worker: Process
    services: Process


def start_services(data_dir: Path, log_path: Path, env: dict[str, str]) -> tuple[str, Process]:
    """``python -m ifcservices all`` on a free port, returned once its ``/health`` answers: (base URL, process)."""
    port = free_port()
    proc = Process([sys.executable, "-m", "ifcservices", "all", "--host", "127.0.0.1", "--port", str(port),
                    "--data-dir", str(data_dir)], env, log_path)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.alive():
            raise AssertionError(log_path.read_text()[-2000:])
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, timeout=60, interval=0.1, what="ifcservices")
    return base, proc


@contextmanager
def real_pipeline(redis_url: str, data_dir: Path, logs: Path, sync_redis: redis.Redis,
                  **extra: str) -> Iterator[Pipeline]:
    """Services, gateway and worker on ``data_dir`` (``extra``: more ``IFCFLOW_*`` variables)."""
    # The geometry cache would share the (small) disk under test: off, so only outputs take room.
    service_env = {"IFCFLOW_GEOMETRY_CACHE_BYTES": "0", **extra}
    base, services = start_services(data_dir, logs / "ifcservices.log", service_env)
    env = {**live_env(redis_url, data_dir, base), **extra}
    gateway = worker = None
    try:
        gateway = start_gateway(env, logs / "gateway.log")
        worker = start_worker(env, logs / "worker.log", sync_redis)
        yield Pipeline(gateway.url, gateway, worker, services)
    finally:
        for proc in (worker, gateway.process if gateway else None, services):
            if proc is not None:
                proc.stop()

