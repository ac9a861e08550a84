"""bench/lightws.py, the bench's small WebSocket client (its live-status scenarios' thousands of sockets),
against real servers: the ``websockets`` library's, and raw ones that answer as a test needs."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
import websockets
from websockets.asyncio.server import serve
from websockets.frames import Frame, Opcode

from bench.lightws import HandshakeError, connect


def server_frame(text: str) -> bytes:
    """``text`` as one final, unmasked text frame, as a server sends it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)

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
    server, _ = await _raw_server(OK_HEAD + server_frame("split") + server_frame("x" * 300), byte_by_byte=True)
    async with server:
        client = await connect(f"ws://127.0.0.1:{_port(server)}/", lambda m, _: got.append(m))
        async with asyncio.timeout(5):
            while len(got) < 2:
                await asyncio.sleep(0.01)
        await client.close()
    assert got == ["split", "x" * 300]

