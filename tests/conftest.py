"""Fixtures: a private redis-server, a scriptable stand-in IFC service, the gateway and worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from aiohttp import web
from asgi_lifespan import LifespanManager

from contracts.operations import SERVICES
from settings import get_settings

REPO = Path(__file__).resolve().parents[1]
API_KEY = "test-key-123"
CONVERT = {"input_filename": "model.ifc", "output_filename": "model.glb"}
TERMINAL = frozenset({"complete", "failed", "aborted"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A redis-server of our own on ``port``; never the shared 6379. Ready when it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found on PATH (apt-get install redis-server)")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    wait_for(lambda: _pings(client), what="redis-server")
    client.close()
    return proc


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"), "--appendonly", "no")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The private Redis, emptied after each test."""
    yield redis_server
    redis.Redis.from_url(redis_server).flushall()


@pytest.fixture
def sync_redis(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@dataclass
class Behaviour:
    status: int = 200
    body: Any = field(default_factory=lambda: {"output_files": ["output/x/out.bin"], "ok": True})
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    # NDJSON lines sent one by one with `delay` seconds between them, instead of one JSON body.
    stream: list[dict[str, Any]] | None = None


class StubService:
    """A stand-in IFC service on a real port: each call takes the next scripted behaviour of its path."""

    def __init__(self) -> None:
        self.script: dict[str, list[Behaviour]] = defaultdict(list)
        self.default = Behaviour()
        self.calls: list[dict[str, Any]] = []
        self.url = ""
        self.in_flight = 0
        self.max_in_flight = 0

    def will(self, path: str, *behaviours: Behaviour) -> None:
        self.script[path].extend(behaviours)

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"] == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/health"):
            return web.json_response({"status": "ok"})
        body = await request.json()
        self.calls.append({"path": request.path, "headers": dict(request.headers), "body": body})
        queue = self.script[request.path]
        b = queue.pop(0) if queue else self.default
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._respond(request, b)
        finally:
            self.in_flight -= 1

    async def _respond(self, request: web.Request, b: Behaviour) -> web.StreamResponse:
        if b.stream is not None:
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
            for line in b.stream:
                await asyncio.sleep(b.delay)
                await resp.write((json.dumps(line) + "\n").encode())
            await resp.write_eof()
            return resp
        await asyncio.sleep(b.delay)
        return web.json_response(b.body, status=b.status, headers=b.headers)


@pytest.fixture
async def stub() -> AsyncIterator[StubService]:
    service = StubService()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", service.handle)
    async with serve(app) as url:
        service.url = url
        yield service


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """An aiohttp app on a free loopback port, for the test's event loop; yields its base URL."""
    # Calls still sleeping on purpose (slow-service tests) must not hold the teardown for a minute.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "uploads").mkdir(parents=True)
    (d / "uploads" / "model.ifc").write_text("ISO-10303-21;\nEND-ISO-10303-21;\n")
    (d / "uploads" / "rules.ids").write_text("<ids/>")
    return d


@pytest.fixture
def env(redis_url: str, data_dir: Path, stub: StubService) -> dict[str, str]:
    """Environment of every ifcflow process in a test: fast polls, short backoff, the stub as every service."""
    values = {
        "IFCFLOW_REDIS_URL": redis_url,
        "IFCFLOW_API_KEYS": f"{API_KEY},second-key",
        "IFCFLOW_DATA_DIR": str(data_dir),
        "IFCFLOW_RETRY_BACKOFF": "0.1",
        "IFCFLOW_RETRY_BACKOFF_MAX": "0.5",
        "IFCFLOW_MAX_TRIES": "4",
        "IFCFLOW_POLL_DELAY": "0.05",
        "IFCFLOW_HEARTBEAT_INTERVAL": "1",
        "IFCFLOW_HEALTH_CHECK_PERIOD": "5",
        "IFCFLOW_LOG_JSON": "true",
    }
    for service in SERVICES:
        values[f"IFCFLOW_{service.upper()}_URL"] = stub.url
    return values


@pytest.fixture
async def client(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in-process, through its lifespan, with a valid key."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    from service.app import create_app

    app = create_app()
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers={"X-API-Key": API_KEY}
        ) as c:
            yield c
    get_settings.cache_clear()


class Process:
    """A real ifcflow process whose stderr is kept for the test to read."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            args, env={**os.environ, **env}, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_worker(env: dict[str, str], log_path: Path, sync_redis: redis.Redis, live: int = 1) -> Process:
    """``arq jobs.WorkerSettings`` as a real process, returned once ``live`` heartbeats are in Redis."""
    proc = Process([sys.executable, "-m", "arq", "jobs.WorkerSettings"], env, log_path)
    wait_for(lambda: sync_redis.zcard("ifcflow:workers") >= live or proc.proc.poll() is not None, what="worker")
    assert proc.proc.poll() is None, proc.log_path.read_text()
    return proc


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path, sync_redis: redis.Redis) -> Iterator[Process]:
    proc = start_worker(env, tmp_path / "worker.log", sync_redis)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def gateway(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``uvicorn service.app:app`` as a real process; yields its base URL."""
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port)],
        env,
        tmp_path / "gateway.log",
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.proc.poll() is not None:
            raise AssertionError(proc.log_path.read_text())
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, what="gateway")
        yield url
    finally:
        proc.stop()


@pytest.fixture
async def api(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the real gateway process, with a valid key."""
    async with httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": API_KEY}, timeout=30) as c:
        yield c


async def submit(api: httpx.AsyncClient, path: str = "/ifcconvert", body: dict[str, Any] | None = None,
                 **kw: Any) -> str:
    """Submit an operation (a convert of uploads/model.ifc by default); the new job's id."""
    r = await api.post(path, json=body or CONVERT, **kw)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def until(api: httpx.AsyncClient, job_id: str, statuses: Iterable[str] = TERMINAL,
                timeout: float = 30.0) -> dict[str, Any]:
    """Poll the job, yielding to the event loop (the stand-in service runs on it), until a status."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = (await api.get(f"/jobs/{job_id}")).json()
        if view.get("status") in wanted:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"job never reached {sorted(wanted)}: {view}")
