"""uvicorn's websockets-sansio protocol plus one ASGI extension: a frame encoded once, written to many sockets.

Why: a change followed by 1,000 sockets is 1,000 sends. Through ASGI each send passes Starlette's
``WebSocket.send``, the middleware's send wrappers and uvicorn's ``send`` (which awaits its flow-control
event and has the ``websockets`` library build and serialize a frame), about as much CPU as the socket
write itself. The frame is the same for every socket (server frames are not masked), so the hub encodes
it once per change and, on sockets served by this protocol, writes it straight to the transport.

The gateway runs with ``--ws service.live.wsprotocol:FanOutWebSocketProtocol`` wherever ifcflow starts
it (``ifcflow up``, compose, Kubernetes, the image, the bench). Under any other ``--ws`` or server the
extension is absent and every message goes through ASGI, as it would anyway whenever the fast path
declines (socket closing, write buffer full, an extension such as permessage-deflate negotiated).

It relies on the sansio protocol's own state (``close_sent``, ``disconnected``, ``conn``, and the
``writable`` flow-control event of uvicorn 0.52.1 and later); with an older uvicorn the extension is
not offered (or, before 0.35, which has no sansio protocol, uvicorn's default protocol serves as is).
"""

from __future__ import annotations

from typing import Any

from websockets.protocol import State

from service.live.subscriber import EXTENSION

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # uvicorn < 0.35
    from uvicorn.protocols.websockets.auto import (  # type: ignore[assignment]
        AutoWebSocketsProtocol as WebSocketsSansIOProtocol,
    )


class FanOutWebSocketProtocol(WebSocketsSansIOProtocol):
    """The stock protocol, offering ``write_frame`` to the application through the connection's scope."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # not made when the handshake was refused
        if scope is not None and hasattr(self, "writable") and not self.conn.extensions:
            scope["extensions"][EXTENSION] = {"write": self.write_frame}

    def write_frame(self, frame: bytes) -> bool:
        """Write a complete, unmasked frame now; False (nothing written) when the socket is not open or its
        transport asks the sender to wait: the caller then sends through ASGI, which waits as it should."""
        if (
            self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        return True
