"""What every scenario starts and shares: the run's Redis, and a scope that stops what a scenario started."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiohttp
from arq import ArqRedis
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from bench.procs import Proc, free_port, python_args, redis_args, wait_until
from bench.raw_arq import QUEUE as RAW_ARQ_QUEUE
from bench.report import verdict
from bench.sizes import Sizes
from contracts.operations import SERVICES
from store import keys
from store.serialization import deserialize, serialize

API_KEY = "bench-key"
RQ_QUEUE = "bench-rq"


@dataclass
class Gateway:
    proc: Proc
    url: str


class Harness:
    """One bench run: sizes, a private redis-server on a free port, a data directory, a log directory."""

    def __init__(
        self, workdir: Path, sizes: Sizes, rounds: int, quick: bool, peers: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        self.sizes = sizes
        self.rounds = rounds
        self.quick = quick
        self.peers = peers  # keys of bench.peers.drivers.ALL to measure beside ifcflow
        self.logs = workdir / "logs"
        self.data_dir = workdir / "data"
        self._redis_proc: Proc | None = None
        self.redis_url = ""
        self._counter = 0

    async def __aenter__(self) -> Harness:
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "uploads").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "uploads" / "model.ifc").write_text("ISO-10303-21;\nEND-ISO-10303-21;\n")
        port = free_port()
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir(exist_ok=True)
        self._redis_proc = Proc("redis-server", redis_args(port, redis_dir), {}, self.logs / "redis.log")
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.redis = Redis.from_url(self.redis_url)
        self.arq = ArqRedis(
            ConnectionPool.from_url(self.redis_url, max_connections=256),
            job_serializer=serialize,
            job_deserializer=deserialize,
        )

        async def pings() -> bool:
            try:
                return bool(await self.redis.ping())
            except (OSError, RedisError):  # refused while it starts
                return False

        await wait_until(pings, "redis-server", procs=(self._redis_proc,))
        return self

    @property
    def redis_pid(self) -> int:
        """The bench's redis-server process."""
        assert self._redis_proc is not None
        return self._redis_proc.pid

    async def __aexit__(self, *_: object) -> None:
        await self.arq.aclose()
        await self.redis.aclose()
        if self._redis_proc is not None:
            self._redis_proc.stop()

    def log_path(self, name: str) -> Path:
        self._counter += 1
        return self.logs / f"{self._counter:03d}-{name}.log"

    def ifcflow_env(self, service_url: str = "http://127.0.0.1:9", **overrides: str) -> dict[str, str]:
        """Environment of gateway and workers; ``overrides`` are ``IFCFLOW_`` settings without the prefix."""
        env = {
            "IFCFLOW_REDIS_URL": self.redis_url,
            "IFCFLOW_API_KEYS": API_KEY,
            "IFCFLOW_DATA_DIR": str(self.data_dir),
            "IFCFLOW_LOG_JSON": "true",
            "IFCFLOW_LOG_LEVEL": "INFO",
        }
        for service in SERVICES:
            env[f"IFCFLOW_{service.upper()}_URL"] = service_url
        env.update({f"IFCFLOW_{k.upper()}": v for k, v in overrides.items()})
        return env

    async def flush(self) -> None:
        await self.redis.flushall()

    async def commands_processed(self) -> int:
        info = await self.redis.info("stats")
        return int(info["total_commands_processed"])

    def judge(self, met: bool | None) -> str:
        """A target's verdict; quick sizes measure nothing."""
        return "n/a (--quick)" if self.quick else verdict(met)

    def scope(self) -> Scope:
        return Scope(self)


class Scope:
    """Processes of one scenario (or one part of it): all stopped, newest first, when the scope ends."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.procs: list[Proc] = []

    async def __aenter__(self) -> Scope:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        while self.procs:
            self.procs.pop().stop()

    def stop(self, procs: list[Proc]) -> None:
        for p in procs:
            p.stop()
            if p in self.procs:
                self.procs.remove(p)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        """Any process of the scenario (the peers' workers start through this)."""
        proc = Proc(name, args, env, self.h.log_path(name))
        self.procs.append(proc)
        return proc

    _start = start

    async def stub(self, delay: float, slots: int = 0) -> str:
        """A stand-in IFC service answering every call after ``delay`` seconds (with ``slots``, 503 busy
        beyond that many calls at once, and its capacity in /health); returns its URL."""
        port = free_port()
        args = python_args(
            "-m", "bench.stub_service", "--port", str(port), "--delay", str(delay), "--slots", str(slots)
        )
        proc = self._start("stub", args, {})
        url = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            return await _http_ok(f"{url}/health")

        await wait_until(up, "stand-in service", procs=(proc,))
        return url

    async def gateway(self, env: dict[str, str], app: str = "service.app:app") -> Gateway:
        """One uvicorn process (the production command); returns once ``/health`` answers."""
        port = free_port()
        args = python_args(
            "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--backlog", "4096",
            "--ws-per-message-deflate", "false",
        )
        proc = self._start("gateway", args, env)
        url = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            return await _http_ok(f"{url}/health", accept=(200, 503))

        await wait_until(up, "gateway", procs=(proc,))
        return Gateway(proc, url)

    async def ifcflow_workers(self, env: dict[str, str], count: int = 1, *, stock: bool = False) -> list[Proc]:
        """``python -m jobs`` processes (``stock``: ``arq jobs.WorkerSettings``, arq's own claims),
        returned once each has sent its heartbeat."""
        before = int(await self.h.redis.zcard(keys.WORKERS))
        args = python_args("-m", "arq", "jobs.WorkerSettings") if stock else python_args("-m", "jobs")
        procs = [self._start("ifcflow-worker", args, env) for _ in range(count)]

        async def live() -> bool:
            return int(await self.h.redis.zcard(keys.WORKERS)) >= before + count

        await wait_until(live, f"{count} ifcflow worker(s)", procs=tuple(procs))
        return procs

    async def raw_arq_worker(self, env: dict[str, str]) -> Proc:
        """A plain arq worker (``bench.raw_arq``) with a no-op function, tuned as ifcflow's."""
        health_key = f"{RAW_ARQ_QUEUE}:health-check"
        await self.h.redis.delete(health_key)
        proc = self._start("raw-arq-worker", python_args("-m", "arq", "bench.raw_arq.WorkerSettings"), env)

        async def live() -> bool:
            return bool(await self.h.redis.exists(health_key))

        await wait_until(live, "raw arq worker", procs=(proc,))
        return proc

    async def rq_workers(self, count: int) -> list[Proc]:
        """``rq worker`` processes (the default forking worker) on the bench's RQ queue."""
        before = int(await self.h.redis.scard("rq:workers"))
        procs = []
        for i in range(count):
            args = python_args(
                "-m", "rq.cli", "worker", "--url", self.h.redis_url, "--name", f"bench-rq-{time.time_ns()}-{i}",
                RQ_QUEUE,
            )
            procs.append(self._start("rq-worker", args, {}))

        async def live() -> bool:
            return int(await self.h.redis.scard("rq:workers")) >= before + count

        await wait_until(live, f"{count} rq worker(s)", procs=tuple(procs))
        return procs


async def _http_ok(url: str, accept: tuple[int, ...] = (200,)) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
            return r.status in accept
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False
