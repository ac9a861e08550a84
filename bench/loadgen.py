"""A small HTTP/1.1 keep-alive load generator on asyncio streams.

Cheaper per request than a general client, so on a 2-core machine the gateway, not the client, is
what runs out of CPU first. Each connection sends one request at a time (closed loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def build_request(url: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    host = urlsplit(url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get_request(url: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_request(url: str, path: str, payload: Any, headers: dict[str, str]) -> bytes:
    return build_request(url, path, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


class Connection:
    """One keep-alive connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._writer is not None:
            self._writer.close()

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request, read its response: (status, body)."""
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        body = await self._reader.readexactly(length) if length else b""
        return status, body


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds
    bodies: list[bytes] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0


@dataclass(frozen=True)
class Load:
    """One request to send over and over, and the status every answer must have."""

    name: str
    raw: bytes
    expect: int


async def alternating_closed_loop(
    url: str, loads: Sequence[Load], clients: int, seconds: float, block: float = 0.2, warmup: float = 0.3
) -> list[LoadResult]:
    """Each of ``loads`` sent back to back on ``clients`` keep-alive connections of its own for
    ``seconds`` (after ``warmup``), the loads taking turns in blocks of ``block`` seconds.

    Taking turns is what makes the results comparable: on a noisy machine a slow spell falls on every
    load alike, instead of on whichever happened to run at the time.
    """
    results = [LoadResult() for _ in loads]
    async with contextlib.AsyncExitStack() as stack:
        groups = [[await stack.enter_async_context(Connection(url)) for _ in range(clients)] for _ in loads]
        for group, load in zip(groups, loads, strict=True):
            await _send_for(group, load, warmup, None)
        while min(result.elapsed for result in results) < seconds:
            for group, load, result in zip(groups, loads, results, strict=True):
                await _send_for(group, load, block, result)
    return results


async def _send_for(conns: list[Connection], load: Load, seconds: float, result: LoadResult | None) -> None:
    # Every connection sends until the time is up; the time counted runs until the last answer is in.
    start = time.perf_counter()
    stop_at = start + seconds

    async def client(conn: Connection) -> None:
        while (sent := time.perf_counter()) < stop_at:
            status, _ = await conn.send(load.raw)
            if result is None:
                continue
            result.requests += 1
            result.latencies.append(time.perf_counter() - sent)
            if status != load.expect:
                result.errors += 1

    await asyncio.gather(*(client(conn) for conn in conns))
    if result is not None:
        result.elapsed += time.perf_counter() - start


async def send_many(
    url: str, make: Callable[[int], bytes], count: int, clients: int, expect: int
) -> LoadResult:
    """Send ``count`` requests (``make(i)`` builds the i-th) over ``clients`` connections; keeps bodies."""
    result = LoadResult(bodies=[b""] * count)
    next_index = 0
    start = time.perf_counter()

    async def client() -> None:
        nonlocal next_index
        async with Connection(url) as conn:
            while next_index < count:
                i = next_index
                next_index += 1
                sent = time.perf_counter()
                status, body = await conn.send(make(i))
                result.latencies.append(time.perf_counter() - sent)
                result.requests += 1
                result.bodies[i] = body
                if status != expect:
                    result.errors += 1

    await asyncio.gather(*(client() for _ in range(min(clients, count))))
    result.elapsed = time.perf_counter() - start
    return result
