"""A small RFC 6455 WebSocket client on ``asyncio.Protocol``, for thousands of sockets on one event loop.

Why not the ``websockets`` library: it spends about 40 us of CPU per received message (a reader task,
futures and a queue per connection, its assembler), so 1,000 clients on the bench's one event loop
take some 40 ms to read one change. The latency scenarios would then measure the bench client, not
the gateway. This client does the protocol work a conforming client must do, and nothing more, in
``data_received``: no task and no future per message.

What it does: the HTTP/1.1 Upgrade handshake (a random ``Sec-WebSocket-Key``, the server's
``Sec-WebSocket-Accept`` checked, no extension or subprotocol offered, so an answer naming one is
refused); masked client frames; server frames parsed as they come, split over reads or several per
read, with 16- and 64-bit lengths; fragmented messages reassembled; text checked to be UTF-8; pings
answered with pongs; the close handshake; a protocol error fails the connection with the RFC's
close code (1002, 1007, 1009). Plain ``ws://`` only: the bench runs on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 64 * 1024
_MAX_MESSAGE = 16 * 1024 * 1024
_CLOSE_WAIT_S = 5.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Called with each complete message (str for text, bytes for binary) and the time its last byte was read.
OnMessage = Callable[[str | bytes, float], None]


class HandshakeError(Exception):
    """The server did not accept the upgrade as RFC 6455 requires."""


class WebSocketClient(asyncio.Protocol):
    """One client connection; messages go to ``on_message`` as they are read, from ``data_received``."""

    def __init__(self, host: str, resource: str, headers: dict[str, str], on_message: OnMessage) -> None:
        self.on_message = on_message  # may be replaced at any time
        self._key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {resource} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._key.decode()}", "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None  # from the server's close frame (1005: none given; 1006: no frame)
        self.error: str | None = None  # why this side failed the connection, if it did
        self._transport: asyncio.Transport | None = None
        self._upgraded = False
        self._buf = b""
        self._frag_op: int | None = None
        self._frag_parts: list[bytes] = []
        self._frag_size = 0
        self._close_sent = False
        self._close_received = False
        self._close_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self.close_code is None:
            self.close_code = 1006
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(self.error or f"connection lost during handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        at = time.perf_counter()  # once per read: every message completed by this read arrived now
        if self._close_received:
            return  # nothing may follow the server's close frame
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if not self._upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEAD:
                    self._fail_handshake("response head too large")
                else:
                    self._buf = data
                return
            if not self._check_handshake(data[:end].decode("latin-1")):
                return
            data = data[end + 4:]
        self._parse(data, at)

    # sending

    def send_text(self, text: str) -> None:
        self._send_frame(OP_TEXT, text.encode())

    async def close(self, code: int = 1000) -> None:
        """The close handshake: our close frame, then wait for the server's and for it to drop TCP."""
        if self._transport is not None and not self._close_sent and not self._transport.is_closing():
            self._send_close(code)
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), _CLOSE_WAIT_S)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        # Every client frame is masked with a fresh key (RFC 6455 5.3).
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 1 << 16:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        key = os.urandom(4)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes((key * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        assert self._transport is not None
        self._transport.write(head + key + masked)

    def _send_close(self, code: int, reason: str = "") -> None:
        self._close_sent = True
        payload = b"" if code == 1005 else code.to_bytes(2, "big") + reason.encode()[:123]
        self._send_frame(OP_CLOSE, payload)

    # receiving

    def _check_handshake(self, head: str) -> bool:
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "101":
            return self._fail_handshake(f"server answered {status_line!r}")
        fields: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                return self._fail_handshake(f"bad header line {line!r}")
            name = name.strip().lower()
            fields[name] = f"{fields[name]}, {value.strip()}" if name in fields else value.strip()
        accept = base64.b64encode(hashlib.sha1(self._key + _GUID, usedforsecurity=False).digest()).decode()
        if fields.get("upgrade", "").lower() != "websocket":
            return self._fail_handshake("no 'Upgrade: websocket'")
        if "upgrade" not in {t.strip().lower() for t in fields.get("connection", "").split(",")}:
            return self._fail_handshake("no 'Connection: Upgrade'")
        if fields.get("sec-websocket-accept") != accept:
            return self._fail_handshake("wrong Sec-WebSocket-Accept")
        for offered_none in ("sec-websocket-extensions", "sec-websocket-protocol"):
            if offered_none in fields:
                return self._fail_handshake(f"{offered_none} in the answer, but none was offered")
        self._upgraded = True
        self.opened.set_result(None)
        return True

    def _fail_handshake(self, why: str) -> bool:
        self.error = why
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(why))
        if self._transport is not None:
            self._transport.close()
        return False

    def _parse(self, data: bytes, at: float) -> None:
        pos, n = 0, len(data)
        while n - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            if b1 & 0x80:
                self._fail(1002, "masked frame from the server")
                return
            length, head = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
            if length > _MAX_MESSAGE:
                self._fail(1009, "frame too large")
                return
            end = pos + head + length
            if end > n:
                break
            payload = data[pos + head:end]
            pos = end
            if not self._frame(b0, payload, at):
                return
        if pos < n:
            self._buf = data[pos:]

    def _frame(self, b0: int, payload: bytes, at: float) -> bool:
        """Handle one frame; False once the connection is failed or closing (the rest is ignored)."""
        if self._transport is None or self._transport.is_closing():
            return False
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if b0 & 0x70:
            return self._fail(1002, "reserved bits set, no extension negotiated")
        if opcode >= OP_CLOSE:
            if not fin or len(payload) > 125:
                return self._fail(1002, "fragmented or long control frame")
            return self._control(opcode, payload)
        if opcode == OP_CONT:
            if self._frag_op is None:
                return self._fail(1002, "continuation without a first fragment")
            self._frag_parts.append(payload)
            self._frag_size += len(payload)
            if self._frag_size > _MAX_MESSAGE:
                return self._fail(1009, "message too large")
            if not fin:
                return True
            opcode, payload = self._frag_op, b"".join(self._frag_parts)
            self._frag_op, self._frag_parts, self._frag_size = None, [], 0
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._frag_op is not None:
                return self._fail(1002, "new message inside a fragmented one")
            if not fin:
                self._frag_op, self._frag_parts, self._frag_size = opcode, [payload], len(payload)
                return True
        else:
            return self._fail(1002, f"unknown opcode {opcode}")
        if opcode == OP_TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                return self._fail(1007, "text message is not UTF-8")
            self.on_message(text, at)
        else:
            self.on_message(payload, at)
        return True

    def _control(self, opcode: int, payload: bytes) -> bool:
        if opcode == OP_PING:
            self._send_frame(OP_PONG, payload)
            return True
        if opcode == OP_PONG:
            return True
        if opcode != OP_CLOSE:
            return self._fail(1002, f"unknown control opcode {opcode}")
        if len(payload) == 1:
            return self._fail(1002, "close frame with a one-byte body")
        code = int.from_bytes(payload[:2], "big") if payload else 1005
        try:
            payload[2:].decode()
        except UnicodeDecodeError:
            return self._fail(1007, "close reason is not UTF-8")
        self.close_code = code
        self._close_received = True
        if not self._close_sent:
            self._send_close(code)  # echo the server's code (RFC 6455 5.5.1)
        # The server closes TCP first; close it ourselves if it does not.
        self._close_timer = asyncio.get_running_loop().call_later(_CLOSE_WAIT_S, self._abort)
        return False

    def _fail(self, code: int, why: str) -> bool:
        """Fail the connection (RFC 6455 7.1.7): a close frame with ``code`` if none was sent, then drop TCP."""
        self.error = why
        if self._transport is not None and not self._transport.is_closing():
            if not self._close_sent:
                self._send_close(code, why)
            self._transport.close()
        return False

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


async def connect(url: str, on_message: OnMessage, headers: dict[str, str] | None = None) -> WebSocketClient:
    """Open ``ws://host:port/path`` and complete the handshake; raises HandshakeError or OSError.

    Callers bound the wait with ``asyncio.timeout``."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"only ws:// URLs: {url}")
    port = parts.port or 80
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if port == 80 else f"{parts.hostname}:{port}"
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(
        lambda: WebSocketClient(host, resource, headers or {}, on_message), parts.hostname, port
    )
    try:
        await client.opened
    except BaseException:
        transport.abort()  # a refused handshake, or the caller's timeout: drop the half-open socket
        raise
    return client
