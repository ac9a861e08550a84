"""Limits the gateway keeps without a proxy: header deadline, connection cap, WebSocket message size,
file limit. A real gateway process started as ifcflow starts it (service/http_limits.py), real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import selectors
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from uvicorn.importer import import_from_string
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from service.http_limits import MAX_HEADER_BYTES, UVICORN_OPTIONS, WS_MAX_MESSAGE_BYTES
from tests.conftest import API_KEY, Process, free_port, wait_for

HEADER_TIMEOUT = 2.0
StartGateway = Callable[..., "LimitedGateway"]


class LimitedGateway:
    def __init__(self, url: str, process: Process) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.process = process

    def status(self, field: str) -> int:
        """A ``/proc/<pid>/status`` value in kB (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.process.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field}")

    def open_file_limit(self) -> tuple[int, int]:
        for line in Path(f"/proc/{self.process.proc.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
        raise AssertionError("no Max open files")


def _with_file_limit(soft: int, hard: int, argv: list[str]) -> list[str]:
    """``argv`` run under RLIMIT_NOFILE (soft, hard), as on a host whose default is that low."""
    code = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard})); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    return [sys.executable, "-c", code, *argv[1:]]


@pytest.fixture
def start_limited_gateway(env: dict[str, str], tmp_path: Path) -> Iterator[StartGateway]:
    """Starts gateways with ifcflow's uvicorn options (plus ``extra``), a short header deadline and the
    given file limit; stops them after the test."""
    started: list[Process] = []

    def start(*extra: str, soft: int = 256, hard: int = 4096) -> LimitedGateway:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port),
                *UVICORN_OPTIONS, *extra]
        proc = Process(_with_file_limit(soft, hard, argv), {**env, "IFCFLOW_HEADER_TIMEOUT": str(HEADER_TIMEOUT)},
                       tmp_path / f"gateway-{len(started)}.log")
        started.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.alive(), proc.log_path.read_text()
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_for(up, 60, interval=0.05, what="gateway")  # the shared 2 cores can be busy
        return LimitedGateway(url, proc)

    yield start
    for proc in started:
        proc.stop()


def _idle_connections(port: int, count: int, partial: bytes = b"") -> list[socket.socket]:
    """``count`` connections that send ``partial`` (maybe nothing) and never finish their headers."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if partial:
            s.sendall(partial)
        socks.append(s)
    return socks


def _until_closed_by_server(socks: list[socket.socket], timeout: float) -> dict[socket.socket, bytes]:
    """Read every socket until the server closes it; what each received. Fails past ``timeout``."""
    received = {s: b"" for s in socks}
    with selectors.DefaultSelector() as sel:
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        open_left = len(socks)
        while open_left:
            left = deadline - time.monotonic()
            assert left > 0, f"{open_left} of {len(socks)} connections still open after {timeout}s"
            for key, _ in sel.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[sock] += chunk
                else:
                    sel.unregister(sock)
                    open_left -= 1
    return received


def _health_ok(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:  # out of descriptors, the server accepts and drops at once (libuv's EMFILE trick)
        return False


def test_connections_that_never_finish_their_headers_are_closed_and_health_answers_again(start_limited_gateway):
    # 300 idle connections against a 256 file limit: before the deadline existed, the gateway ran out of
    # descriptors for good and /health failed from then on.
    gateway = start_limited_gateway(soft=256, hard=256)
    half = _idle_connections(gateway.port, 120, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    silent = _idle_connections(gateway.port, 180)
    started = time.monotonic()
    try:
        wait_for(lambda: _health_ok(gateway.url), HEADER_TIMEOUT * 5, interval=0.2, what="/health to answer 200")
        received = _until_closed_by_server(half + silent, HEADER_TIMEOUT * 5)
        assert time.monotonic() - started < HEADER_TIMEOUT * 5
        assert all(received[s] == b"" for s in silent), "a connection that sent nothing is just closed"
        assert all(received[s].startswith(b"HTTP/1.1 408 ") for s in half), "half a request is told why"
    finally:
        for s in silent + half:
            s.close()


def test_the_h11_protocol_keeps_the_same_header_deadline(start_limited_gateway):
    # Where httptools is not installed, --http auto and ifcflow's protocol fall back to h11.
    gateway = start_limited_gateway("--http", "service.http_limits:GuardedH11Protocol")
    half = _idle_connections(gateway.port, 20, b"GET /health HTTP/1.1\r\nHost: x\r\n")
    try:
        received = _until_closed_by_server(half, HEADER_TIMEOUT * 5)
        assert all(received[s].startswith(b"HTTP/1.1 408 ") for s in half)
        assert httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200
    finally:
        for s in half:
            s.close()


def test_headers_over_the_limit_get_431_without_the_gateway_buffering_them(start_limited_gateway):
    gateway = start_limited_gateway()
    peak_before = gateway.status("VmHWM")
    answers = []
    for _ in range(5):  # before the limit, 5 x 20 MB of headers grew the gateway by ~100 MB
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(OSError):  # the gateway closes as soon as the limit is passed
                for _ in range(2500):
                    s.sendall(b"X-Pad: " + b"a" * 8000 + b"\r\n")
            answers.append(s.recv(4096))
    assert all(a.startswith(b"HTTP/1.1 431 ") for a in answers), answers
    assert (gateway.status("VmHWM") - peak_before) / 1024 < 20
    # Big but within the limit: answered.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (MAX_HEADER_BYTES // 2) + b"\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200 ")


def test_a_slow_body_and_a_kept_alive_connection_are_not_cut_by_the_header_deadline(start_limited_gateway):
    gateway = start_limited_gateway()
    with httpx.Client(base_url=gateway.url, headers={"X-API-Key": API_KEY}) as client:
        assert client.get("/health").status_code == 200
        # The connection idles past the header deadline between requests: uvicorn's keep-alive timeout
        # (5 s), not the deadline, decides when an idle kept-alive connection goes.
        time.sleep(HEADER_TIMEOUT + 0.5)  # the behaviour under test is a span of idle time
        assert client.get("/health").status_code == 200
    # Headers in at once, the body trickling for longer than the deadline: answered, not cut.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        body = json.dumps({"input_filename": "model.ifc", "output_filename": "slow.glb"}).encode()
        s.sendall(b"POST /ifcconvert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"X-API-Key: {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:5])
        time.sleep(HEADER_TIMEOUT + 0.5)  # a slow client on purpose
        s.sendall(body[5:])
        assert s.recv(4096).startswith(b"HTTP/1.1 202 ")


def test_beyond_the_connection_cap_a_request_gets_503_until_idle_connections_are_closed(start_limited_gateway):
    gateway = start_limited_gateway("--limit-concurrency", "50")
    idle = _idle_connections(gateway.port, 60)
    try:
        refused = wait_for(lambda: (r := httpx.get(f"{gateway.url}/health", timeout=5)).status_code == 503 and r,
                           HEADER_TIMEOUT * 3, what="a 503 beyond the cap")
        assert refused.text == "Service Unavailable"
        # Once the deadline has closed the idle connections, the gateway answers again.
        _until_closed_by_server(idle, HEADER_TIMEOUT * 4)
        assert httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200
    finally:
        for s in idle:
            s.close()


async def _send_first(url: str, payload: str) -> tuple[int | None, str]:
    """Open a socket with no key, send ``payload`` first; the close code and reason the gateway sent."""
    async with ws_connect(url, max_size=None, open_timeout=10, close_timeout=5) as ws:
        try:
            await ws.send(payload)
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed:
            pass
    return ws.close_code, ws.close_reason or ""


async def test_big_first_messages_before_the_key_are_refused_and_cost_the_gateway_little_memory(
    start_limited_gateway,
):
    gateway = start_limited_gateway()
    url = f"ws://127.0.0.1:{gateway.port}/ws/jobs"
    peak_before = gateway.status("VmHWM")
    # 20 sockets at once, each sending 8 MiB before any key: uvicorn's 16 MiB default buffered all.
    closes = await asyncio.gather(*(_send_first(url, "k" * (8 * 1024 * 1024)) for _ in range(20)))
    # 1009 message too big; 4401 when a sender had not even got its frame out within the 5 s the
    # gateway waits for a key (20 senders share the test's one event loop).
    assert {code for code, _ in closes} <= {1009, 4401} and 1009 in {code for code, _ in closes}, closes
    grown_mb = (gateway.status("VmHWM") - peak_before) / 1024
    assert grown_mb < 40, f"peak RSS grew {grown_mb:.0f} MB"
    # Under the socket limit but no key message either: refused by the gateway with the reason.
    code, reason = await _send_first(url, "k" * (WS_MAX_MESSAGE_BYTES // 2))
    assert code == 1009 and "send the key" in reason
    # The key as first message still works.
    async with ws_connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps({"api_key": API_KEY}))
        with pytest.raises(TimeoutError):  # authenticated: the socket stays open, waiting for changes
            await asyncio.wait_for(ws.recv(), 0.5)


def test_the_gateway_raises_its_soft_file_limit_to_the_hard_one(start_limited_gateway):
    gateway = start_limited_gateway(soft=256, hard=4096)
    assert gateway.open_file_limit() == (4096, 4096)


def test_ifcflow_up_starts_the_gateway_with_the_limits() -> None:
    from cli.plan import UpOptions, gateway_spec

    argv = gateway_spec(UpOptions(port=8123), {}).argv
    assert argv[-len(UVICORN_OPTIONS):] == UVICORN_OPTIONS
    protocol = import_from_string(UVICORN_OPTIONS[UVICORN_OPTIONS.index("--http") + 1])
    assert callable(protocol) and protocol.__module__ == "service.http_limits"
