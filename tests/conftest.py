"""Fixtures: a private redis-server, a scriptable stand-in IFC service, the gateway and worker processes.

One gateway and one worker process serve every test of the session that asks for ``gateway``/``api`` and
``worker`` with the standard environment; each test still starts from an empty Redis (flushed after each
test, the shared worker's heartbeat and the service checks put back), a fresh data directory and a stand-in
service with an empty script. A test that changes ``env`` before asking for a process, or that starts,
kills or restarts processes itself, gets processes of its own (and the shared worker is stopped while it
runs, so nothing else takes its jobs).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from aiohttp import web
from arq import ArqRedis
from asgi_lifespan import LifespanManager

from contracts.operations import SERVICES
from settings import get_settings
from storage.local import LocalStorage
from store import keys

REPO = Path(__file__).resolve().parents[1]
API_KEY = "test-key-123"
CONVERT = {"input_filename": "model.ifc", "output_filename": "model.glb"}
TERMINAL = frozenset({"complete", "failed", "aborted"})
# The worker's entry point: ``python -m jobs`` (batch claims) once the package has one; arq's own CLI
# (``arq jobs.WorkerSettings``, arq's claims) keeps working and is what older trees have.
ARQ_WORKER_COMMAND = [sys.executable, "-m", "arq", "jobs.WorkerSettings"]
WORKER_COMMAND = (
    [sys.executable, "-m", "jobs"] if os.path.exists(REPO / "jobs" / "__main__.py") else ARQ_WORKER_COMMAND
)
GATEWAY_COMMAND = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1"]
# Liveness keys of the shared worker that a per-test flush puts back.
WORKERS_KEY = keys.WORKERS
WORKER_KEY = keys.WORKER
SERVICE_HEALTH_KEY = keys.SERVICE_HEALTH

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05,
             what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def eventually(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05,
                     what: str = "condition") -> T:
    """``wait_for`` that yields to the event loop (the stand-in service runs on it) between polls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(interval)
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
    wait_for(lambda: _pings(client), interval=0.01, what="redis-server")
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
def redis_url(redis_server: str, shared: Shared) -> Iterator[str]:
    """The private Redis, emptied after each test (the shared worker's liveness put back)."""
    yield redis_server
    shared.flush()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[ArqRedis]:
    """An asyncio client of the private Redis (arq's, so arq's own calls work on it too)."""
    client = ArqRedis.from_url(redis_url)
    yield client
    await client.aclose()


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
        self.url = ""
        self._handlers: set[asyncio.Task[Any]] = set()
        self.reset()

    def reset(self) -> None:
        """An empty script and call log; calls still open from an earlier test are cut off."""
        for task in self._handlers:
            task.cancel()
        self._handlers.clear()
        self.script: dict[str, list[Behaviour]] = defaultdict(list)
        self.default = Behaviour()
        self.calls: list[dict[str, Any]] = []
        self.max_in_flight = 0

    @property
    def in_flight(self) -> int:
        return len(self._handlers)

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
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._respond(request, b)
        finally:
            self._handlers.discard(task)

    async def _respond(self, request: web.Request, b: Behaviour) -> web.StreamResponse:
        if b.stream is not None:
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
            for line in b.stream:
                await asyncio.sleep(b.delay)  # the service's pace: what the test is about
                await resp.write((json.dumps(line) + "\n").encode())
            await resp.write_eof()
            return resp
        await asyncio.sleep(b.delay)  # a slow service on purpose
        return web.json_response(b.body, status=b.status, headers=b.headers)


@pytest.fixture(scope="session")
async def _stub_service() -> AsyncIterator[StubService]:
    service = StubService()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", service.handle)
    async with serve(app) as url:
        service.url = url
        yield service
        service.reset()


@pytest.fixture
def stub(_stub_service: StubService) -> Iterator[StubService]:
    """The stand-in service (one for the session) with an empty script and call log."""
    _stub_service.reset()
    yield _stub_service
    _stub_service.reset()


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


def reset_data_dir(d: Path) -> Path:
    """The layout the gateway makes at start (uploads/, output/<service>/) and the two sample inputs."""
    if d.exists():
        shutil.rmtree(d)
    (d / "uploads").mkdir(parents=True)
    for service in SERVICES:
        (d / "output" / service).mkdir(parents=True)
    (d / "uploads" / "model.ifc").write_text("ISO-10303-21;\nEND-ISO-10303-21;\n")
    (d / "uploads" / "rules.ids").write_text("<ids/>")
    return d


@pytest.fixture
def data_dir(shared: Shared) -> Path:
    """The data directory of the session's processes, emptied before each test."""
    return reset_data_dir(shared.data_dir)


def base_env(redis_url: str, data_dir: Path, service_url: str) -> dict[str, str]:
    """Environment of every ifcflow process in a test: fast polls, short backoff, the stub as every service."""
    values = {
        "IFCFLOW_REDIS_URL": redis_url,
        "IFCFLOW_API_KEYS": f"{API_KEY},second-key",
        "IFCFLOW_DATA_DIR": str(data_dir),
        "IFCFLOW_RETRY_BACKOFF": "0.1",
        "IFCFLOW_RETRY_BACKOFF_MAX": "0.5",
        "IFCFLOW_MAX_TRIES": "4",
        "IFCFLOW_POLL_DELAY": "0.05",
        "IFCFLOW_HEARTBEAT_INTERVAL": "0.5",
        "IFCFLOW_HEALTH_CHECK_PERIOD": "5",
        "IFCFLOW_SHUTDOWN_WAIT": "5",
        "IFCFLOW_LOG_JSON": "true",
    }
    for service in SERVICES:
        values[f"IFCFLOW_{service.upper()}_URL"] = service_url
    return values


@pytest.fixture
def env(redis_url: str, data_dir: Path, stub: StubService, shared: Shared) -> dict[str, str]:
    """This test's copy of the processes' environment; change it before asking for ``gateway``/``worker``
    to get processes of your own with the change."""
    return dict(shared.env)


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

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_worker(env: dict[str, str], log_path: Path, sync_redis: redis.Redis, live: int = 1,
                 command: list[str] | None = None) -> Process:
    """The worker (``command``, by default ``WORKER_COMMAND``) as a real process, returned once ``live``
    heartbeats are in Redis."""
    proc = Process(list(command or WORKER_COMMAND), env, log_path)
    wait_for(lambda: sync_redis.zcard(WORKERS_KEY) >= live or not proc.alive(), interval=0.02, what="worker")
    assert proc.alive(), proc.log_path.read_text()
    return proc


@dataclass
class Gateway:
    url: str
    process: Process


def start_gateway(env: dict[str, str], log_path: Path, *options: str) -> Gateway:
    """``uvicorn service.app:app`` as a real process, returned once it answers /health."""
    port = free_port()
    proc = Process([*GATEWAY_COMMAND, "--port", str(port), *options], env, log_path)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.alive():
            raise AssertionError(proc.log_path.read_text())
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=60, interval=0.02, what="gateway")  # an import under load took ~20 s
    return Gateway(url, proc)


class Shared:
    """The session's gateway and worker, started when first asked for, for tests with the standard env."""

    def __init__(self, redis_url: str, workdir: Path, service_url: str) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.data_dir = reset_data_dir(workdir / "data")
        self.env = base_env(redis_url, self.data_dir, service_url)
        self.redis = redis.Redis.from_url(redis_url)
        self.gateway: Gateway | None = None
        self.worker: Process | None = None
        self.worker_id: bytes | None = None
        self._starts = 0

    def _log(self, name: str) -> Path:
        self._starts += 1
        return self.workdir / f"{self._starts:03d}-{name}.log"

    def gateway_url(self) -> str:
        if self.gateway is None or not self.gateway.process.alive():
            self.gateway = start_gateway(self.env, self._log("gateway"))
        return self.gateway.url

    def worker_process(self) -> Process:
        if self.worker is None or not self.worker.alive():
            before = set(self.redis.zrange(WORKERS_KEY, 0, -1))
            self.worker = start_worker(self.env, self._log("worker"), self.redis, live=len(before) + 1)
            [self.worker_id] = set(self.redis.zrange(WORKERS_KEY, 0, -1)) - before
        return self.worker

    def stop_worker(self) -> None:
        """Stop the shared worker and empty Redis of whatever it wrote since the last flush.

        SIGKILL, not SIGTERM: a graceful stop would wait (IFCFLOW_SHUTDOWN_WAIT) for a call of its own to
        the stand-in service, which cannot answer while this fixture code holds the event loop.
        """
        if self.worker is None:
            return
        self.worker.kill()
        self.worker = self.worker_id = None
        self.flush()

    def worker_is_idle(self, stub: StubService) -> bool:
        """No call of the worker still open at the stand-in service, and no job queued or running."""
        if stub.in_flight:
            return False
        with httpx.Client(base_url=self.gateway_url(), headers={"X-API-Key": API_KEY}, timeout=10) as api:
            for status in ("in_progress", "queued"):
                if api.get("/jobs", params={"status": status, "limit": 1}).json()["jobs"]:
                    return False
        return True

    def flush(self) -> None:
        """FLUSHALL, then the shared worker's heartbeat and the service checks it made are put back."""
        kept: list[tuple[bytes, int, bytes]] = []
        score = None
        if self.worker is not None and self.worker.alive() and self.worker_id is not None:
            score = self.redis.zscore(WORKERS_KEY, self.worker_id)
            names = [WORKER_KEY.encode() + self.worker_id, *self.redis.scan_iter(f"{SERVICE_HEALTH_KEY}*")]
            for name in names:
                dumped, ttl = self.redis.dump(name), self.redis.pttl(name)
                if dumped is not None and ttl > 0:
                    kept.append((name, ttl, dumped))
        self.redis.flushall()
        if score is not None and self.worker_id is not None:
            self.redis.zadd(WORKERS_KEY, {self.worker_id: score})
        for name, ttl, dumped in kept:
            self.redis.restore(name, ttl, dumped, replace=True)

    def close(self) -> None:
        self.stop_worker()
        if self.gateway is not None:
            self.gateway.process.stop()
        self.redis.close()


@pytest.fixture(scope="session")
def shared(redis_server: str, tmp_path_factory: pytest.TempPathFactory,
           _stub_service: StubService) -> Iterator[Shared]:
    processes = Shared(redis_server, tmp_path_factory.mktemp("shared"), _stub_service.url)
    yield processes
    processes.close()


@pytest.fixture(autouse=True)
def _no_stray_shared_worker(request: pytest.FixtureRequest, shared: Shared) -> None:
    """Only tests that ask for ``worker`` have the shared worker running: no other test's jobs get taken."""
    if "worker" not in request.fixturenames:
        shared.stop_worker()


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path, sync_redis: redis.Redis, shared: Shared,
           stub: StubService) -> Iterator[Process]:
    """A worker: the shared one with the standard env, else one of this test's own (started on the spot)."""
    if env != shared.env:
        shared.stop_worker()
        proc = start_worker(env, tmp_path / "worker.log", sync_redis)
        try:
            yield proc
        finally:
            proc.stop()
        return
    proc = shared.worker_process()
    yield proc
    if not proc.alive() or not shared.worker_is_idle(stub):
        shared.stop_worker()  # it still holds this test's jobs: the next test gets a fresh one


@pytest.fixture
def gateway(env: dict[str, str], tmp_path: Path, shared: Shared) -> Iterator[str]:
    """The gateway as a real process (the shared one with the standard env); yields its base URL."""
    if env == shared.env:
        yield shared.gateway_url()
        return
    own = start_gateway(env, tmp_path / "gateway.log")
    try:
        yield own.url
    finally:
        own.process.stop()


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
        await asyncio.sleep(0.02)
    raise AssertionError(f"job never reached {sorted(wanted)}: {view}")


async def until_seed_ended(api: httpx.AsyncClient, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """What the n8n node's pollForJobCompletion reads: ``GET /jobs/{id}/status`` (ifcpipeline's shape)
    until ``finished`` or ``failed``."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = (await api.get(f"/jobs/{job_id}/status")).json()
        if status.get("status") in ("finished", "failed"):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {status}")



@pytest.fixture
async def storage(data_dir: Path) -> AsyncIterator[LocalStorage]:
    """The local backend on the test's data directory, for code called in-process (workflows, schedules)."""
    store = LocalStorage(data_dir)
    await store.start()
    yield store
    await store.close()

from tests.s3_server import s3_bucket, s3_endpoint  # noqa: E402,F401
