"""Limits the gateway keeps on its own, with no proxy in front: what uvicorn is started with.

uvicorn has a connection cap (``--limit-concurrency``: a 503 beyond it), a WebSocket message limit
(``--ws-max-size``) and a keep-alive timeout, but no limit on the time a client takes to send its
request's headers (uvicorn issue 157): a connection that sends nothing, or half a request line, is held
for good, and enough of them use up the process's file descriptors, so that ``/health`` fails. The
protocol classes here are uvicorn's own HTTP protocols (chosen as ``--http auto`` chooses) with a header
deadline added, passed to uvicorn by its public ``--http <module:class>`` option.

Semantics (as hyper's ``header_read_timeout``): the deadline starts when the connection is made, and
again at the first byte of each later request on a kept-alive connection; once the headers are in it is
off, so slow bodies (large uploads) and long responses (SSE, WebSockets) are never cut.

This is the one module that leans on uvicorn's protocol internals (the ``cycle``, ``transport`` and
``loop`` attributes its protocol classes set, and ``cycle.response_complete``). Tested with uvicorn
0.54 (pyproject pins ``>=0.54,<0.55``); ``tests/test_hostile_limits.py`` fails when they change.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from settings import get_settings

# Every message a client sends to a socket after the key is ignored (the gateway only talks), and the
# key message is tiny: 64 KiB bounds what a socket can make the gateway buffer (uvicorn's default is
# 16 MiB, so 30 sockets cost ~1 GB). The first message before authentication is held to less in
# service.live.auth.
WS_MAX_MESSAGE_BYTES = 64 * 1024
# Above the 5,000 live sockets one gateway process is sized for (docs/performance.md), below the file
# limit the gateway raises itself to: past it a request gets 503, not a refused or hanging connection.
MAX_CONNECTIONS = 8192

# A request's line and headers together: browsers send a few KiB, nginx's default allows 32 KiB. uvicorn's
# httptools protocol has no limit: 5 connections sending 20 MB of headers each cost it ~100 MB.
MAX_HEADER_BYTES = 64 * 1024

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _HeaderDeadline(asyncio.Protocol):
    """Closes the connection when a request's headers are not complete ``IFCFLOW_HEADER_TIMEOUT`` after
    it was opened (or after the first byte of a later request), or are over ``MAX_HEADER_BYTES``.
    Mixed into uvicorn's protocol classes; reads only what both set: ``transport``, ``loop`` and
    ``cycle`` (the request being answered)."""

    transport: Any
    loop: Any
    cycle: Any
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        if self._header_timer is None and (before is None or before.response_complete):
            self._arm_header_deadline()  # the first byte of a new request on a kept-alive connection
        if self._header_timer is not None:
            self._header_bytes += len(data)
        super().data_received(data)
        upgraded = self.transport.get_protocol() is not self  # now a WebSocket: its own limits apply
        if upgraded or (self.cycle is not before and self.cycle is not None):
            self._disarm_header_deadline()
        elif self._header_timer is not None and self._header_bytes > MAX_HEADER_BYTES:
            # Counted after parsing: a chunk with whole headers and the start of a big body is fine.
            self._disarm_header_deadline()
            if not self.transport.is_closing():
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(get_settings().header_timeout, self._headers_overdue)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        if self._header_bytes:  # half a request: say why; a connection that sent nothing just closes
            self.transport.write(_TIMED_OUT)
        self.transport.close()


class GuardedH11Protocol(_HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with the header deadline (``--http service.http_limits:GuardedH11Protocol``)."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional (uvicorn[standard] brings it): fall back as --http auto does
    GatewayHTTPProtocol: type[asyncio.Protocol] = GuardedH11Protocol
else:

    class GuardedHttpToolsProtocol(_HeaderDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header deadline."""

    GatewayHTTPProtocol = GuardedHttpToolsProtocol


# How every gateway is started (ifcflow up, compose, Kubernetes, the image): stock uvicorn options.
UVICORN_OPTIONS: tuple[str, ...] = (
    "--http", "service.http_limits:GatewayHTTPProtocol",
    "--limit-concurrency", str(MAX_CONNECTIONS),
    "--ws-max-size", str(WS_MAX_MESSAGE_BYTES),
)  # fmt: skip


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the soft limit now in force.

    Linux's usual soft limit, 1,024, is below the connection cap: past it ``accept`` fails and every
    client, ``/health`` too, sees a hanging connection instead of a 503. Children inherit the limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # a hard limit above what the kernel allows (nr_open): keep ours
            return soft
        return target
    return soft
