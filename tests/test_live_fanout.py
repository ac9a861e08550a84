"""The live hub's fan-out to one subscriber, and the bench's small WebSocket client: no Redis, no gateway.

Sends start in the fan-out loop (a socket that keeps up costs no task); a slow socket's messages wait in
a bounded buffer, oldest dropped; a terminal change closes the socket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import pytest
import uvicorn
import websockets
from websockets.asyncio.server import serve
from websockets.frames import Frame, Opcode

from bench.lightws import HandshakeError, connect
from service.live.events import Event, text_frame
from service.live.subscriber import EXTENSION, MAX_HELD, Subscriber
from service.live.wsprotocol import FanOutWebSocketProtocol
from tests.conftest import free_port


def event(n: int, status: str = "in_progress") -> Event:
    text = json.dumps({"event": "progress", "status": status, "progress": {"percent": n}})
    return Event("progress", status, text, {"type": "websocket.send", "text": text}, text_frame(text))


class FakeSocket:
    """A Starlette WebSocket's surface: ASGI sends that suspend while ``gate`` is closed, and (optionally)
    the frame writer the gateway's uvicorn protocol offers, declining while ``paused``."""

    def __init__(self, frames: bool = True) -> None:
        self.scope = {"extensions": {EXTENSION: {"write": self.write}}} if frames else {"extensions": {}}
        self.written: list[bytes] = []  # frames written straight to the socket
        self.sent: list[str] = []  # messages sent through ASGI
        self.out: list[str] = []  # both, in the order they went out
        self.closed: list[int] = []
        self.gate: asyncio.Event | None = None
        self.paused = False
        self.fail = False

    def write(self, frame: bytes) -> bool:
        if self.paused:
            return False
        self.written.append(frame)
        self.out.append(frame[4:].decode() if frame[1] == 126 else frame[2:].decode())
        return True

    async def send(self, message: dict[str, str]) -> None:
        if self.fail:
            raise RuntimeError("socket closed")
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(message["text"])
        self.out.append(message["text"])

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed.append(code)

    def percents(self) -> list[int]:
        return [json.loads(t)["progress"]["percent"] for t in self.out]


async def test_a_socket_that_keeps_up_is_written_to_from_the_fan_out_itself() -> None:
    ws, sub = FakeSocket(), Subscriber("job")
    sub.attach(ws, close_on_terminal=True)  # type: ignore[arg-type]
    tasks = len(asyncio.all_tasks())
    for n in range(3):
        sub.offer(event(n))
    assert ws.percents() == [0, 1, 2]  # at once, in order, before any other task ran
    assert len(asyncio.all_tasks()) == tasks
    assert ws.written[0] == event(0).frame


async def test_without_the_frame_writer_the_asgi_send_completes_inline() -> None:
    ws, sub = FakeSocket(frames=False), Subscriber("job")
    sub.attach(ws, close_on_terminal=True)  # type: ignore[arg-type]
    for n in range(3):
        sub.offer(event(n))
    assert ws.sent == [event(n).text for n in range(3)]


async def test_changes_before_the_snapshot_went_out_follow_it_in_order() -> None:
    ws, sub = FakeSocket(), Subscriber("job")
    sub.offer(event(1))
    sub.offer(event(2))
    assert ws.percents() == []
    sub.attach(ws, close_on_terminal=True)  # type: ignore[arg-type]
    sub.offer(event(3))
    assert ws.percents() == [1, 2, 3]


@pytest.mark.parametrize("frames", [True, False])
async def test_a_slow_socket_holds_a_bounded_backlog_and_resumes_at_the_latest_state(frames: bool) -> None:
    ws, sub = FakeSocket(frames), Subscriber("job")
    sub.attach(ws, close_on_terminal=True)  # type: ignore[arg-type]
    ws.paused, ws.gate = True, asyncio.Event()  # the transport's buffer is full
    for n in range(200):
        sub.offer(event(n))
    await asyncio.sleep(0)
    assert ws.percents() == [] and sub.dropped == 200 - 1 - MAX_HELD
    ws.paused = False
    ws.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert ws.percents() == [0, *range(200 - MAX_HELD, 200)]  # the one in flight, then the newest 64
    sub.offer(event(200))  # caught up: straight from the fan-out again
    assert ws.percents()[-1] == 200


async def test_the_terminal_change_closes_the_socket_and_nothing_follows() -> None:
    ws, sub = FakeSocket(), Subscriber("job")
    sub.attach(ws, close_on_terminal=True)  # type: ignore[arg-type]
    sub.offer(event(1))
    sub.offer(event(2, status="complete"))
    sub.offer(event(3))
    assert ws.percents() == [1, 2] and ws.closed == [1000]


async def test_the_all_jobs_stream_is_not_closed_by_a_terminal_change() -> None:
    ws, sub = FakeSocket(), Subscriber(None)
    sub.attach(ws, close_on_terminal=False)  # type: ignore[arg-type]
    sub.offer(event(1, status="complete"))
    sub.offer(event(2))
    assert ws.percents() == [1, 2] and ws.closed == []


async def test_a_client_that_left_stops_its_waiting_send_and_gets_nothing_more() -> None:
    ws, sub = FakeSocket(frames=False), Subscriber("job")
    sub.attach(ws, close_on_terminal=True)  # type: ignore[arg-type]
    ws.gate = asyncio.Event()
    sub.offer(event(1))
    sub.offer(event(2))
    sub.detach()
    await asyncio.sleep(0)
    ws.gate.set()
    sub.offer(event(3))
    await asyncio.sleep(0)
    assert ws.sent == []


async def test_a_failed_send_ends_the_feed() -> None:
    ws, sub = FakeSocket(frames=False), Subscriber("job")
    sub.attach(ws, close_on_terminal=True)  # type: ignore[arg-type]
    ws.fail = True
    sub.offer(event(1))
    ws.fail = False
    sub.offer(event(2))
    assert ws.sent == []


async def test_a_pulling_reader_gets_a_bounded_queue_with_what_came_before() -> None:
    sub = Subscriber("job")
    sub.offer(event(0))
    queue = sub.queue
    for n in range(1, 100):
        sub.offer(event(n))
    assert queue.qsize() == MAX_HELD and sub.dropped == 100 - MAX_HELD
    first = await queue.get()
    assert first is not None and json.loads(first.text)["progress"]["percent"] == 100 - MAX_HELD


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_text_frames_are_encoded_as_the_websockets_library_does(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    assert text_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


# --- bench/lightws.py: the bench's WebSocket client ---------------------------------------------------


async def test_the_bench_client_reads_fragments_answers_pings_and_echoes_the_close() -> None:
    pongs: list[float] = []

    async def handler(ws: websockets.ServerConnection) -> None:
        await ws.send("one")
        await ws.send(["fr", "ag", "ment"])  # three frames, one message
        pongs.append(await (await ws.ping(b"hi")))
        await ws.send("ü" * 100_000)  # 64-bit length
        await ws.close(4000, "bye")

    got: list[str | bytes] = []
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        client = await connect(f"ws://127.0.0.1:{port}/x", lambda m, _: got.append(m))
        await asyncio.wait_for(client.closed, 5)
    assert got == ["one", "fragment", "ü" * 100_000]
    assert pongs and client.close_code == 4000 and client.error is None


OK_HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: ACCEPT\r\n\r\n"
)


async def _raw_server(answer: bytes, byte_by_byte: bool = False) -> tuple[asyncio.Server, list[bytes]]:
    """A server that answers the upgrade with ``answer`` (ACCEPT replaced by the right key), then keeps
    what the client sends next."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
                   if k.lower() == b"sec-websocket-key")
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        data = answer.replace(b"ACCEPT", accept)
        for piece in ([data[i:i + 1] for i in range(len(data))] if byte_by_byte else [data]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0)  # each piece its own read on the client's side
        received.append(await reader.read(1000))
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), received


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def test_the_bench_client_refuses_a_wrong_accept_key() -> None:
    server, _ = await _raw_server(OK_HEAD.replace(b"ACCEPT", b"bm90IHRoZSByaWdodCBrZXk="))
    async with server:
        with pytest.raises(HandshakeError, match="Accept"):
            await connect(f"ws://127.0.0.1:{_port(server)}/", lambda m, _: None)


async def test_the_bench_client_fails_the_connection_on_a_masked_server_frame() -> None:
    masked = bytes((0x81, 0x80 | 2)) + b"\x01\x02\x03\x04" + bytes((ord("h") ^ 1, ord("i") ^ 2))
    server, received = await _raw_server(OK_HEAD + masked)
    async with server:
        client = await connect(f"ws://127.0.0.1:{_port(server)}/", lambda m, _: None)
        await asyncio.wait_for(client.closed, 5)
    assert client.error and "masked" in client.error
    close = received[0]
    assert close[0] == 0x88 and close[1] & 0x80  # a masked close frame from the client...
    key, body = close[2:6], close[6:]
    code = bytes(b ^ key[i % 4] for i, b in enumerate(body))[:2]
    assert int.from_bytes(code, "big") == 1002  # ...saying "protocol error"


async def test_the_bench_client_reads_a_handshake_and_frames_that_arrive_one_byte_at_a_time() -> None:
    got: list[str | bytes] = []
    server, _ = await _raw_server(OK_HEAD + text_frame("split") + text_frame("x" * 300), byte_by_byte=True)
    async with server:
        client = await connect(f"ws://127.0.0.1:{_port(server)}/", lambda m, _: got.append(m))
        async with asyncio.timeout(5):
            while len(got) < 2:
                await asyncio.sleep(0.01)
        await client.close()
    assert got == ["split", "x" * 300]


# --- service/live/wsprotocol.py: the frame writer, in the uvicorn this project installs ---------------


@pytest.mark.parametrize("deflate", [False, True])
async def test_the_gateway_protocol_offers_a_frame_writer_unless_an_extension_was_negotiated(deflate: bool) -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        offered = scope["extensions"].get(EXTENSION)
        if offered is None:
            await send({"type": "websocket.send", "text": "no frame writer"})
        else:
            assert offered["write"](text_frame("written straight"))
            await send({"type": "websocket.send", "text": "then through ASGI"})
        await send({"type": "websocket.close", "code": 1000})

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws=FanOutWebSocketProtocol,
                            ws_per_message_deflate=deflate, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:  # offers permessage-deflate
            got = [m async for m in ws]
    finally:
        server.should_exit = True
        await serving
    assert got == (["no frame writer"] if deflate else ["written straight", "then through ASGI"])
