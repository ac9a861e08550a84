"""Following one job to its end over ``WS /jobs/{id}/ws``, reconnecting when the socket breaks.

The gateway sends the job's snapshot first, then a message on every change, and closes after a
terminal state. A broken socket is reopened (the new snapshot covers what was missed); a gateway that
refuses the upgrade itself (a proxy without WebSockets) is polled with ``GET /jobs/{id}`` instead.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect

from cli.connection import EXIT_REFUSED, EXIT_UNREACHABLE, ClientError, Connection
from cli.display import TERMINAL_STATES, Display
from cli.gateway import Gateway

# The gateway's close codes: 4401/4403 mirror HTTP 401 (no key) and 403 (wrong key).
_CLOSE_REASONS = {
    4401: "the gateway wants an API key: pass --api-key or set IFCFLOW_API_KEY",
    4403: "the gateway refused the API key: check --api-key or IFCFLOW_API_KEY",
    4404: "not found",
}
_OPEN_TIMEOUT = 10.0
_POLL_INTERVAL = 1.0


class Follower:
    """Follows one job; ``run()`` returns its final view (complete, failed or aborted)."""

    def __init__(
        self, conn: Connection, gateway: Gateway, job_id: str, display: Display, *, max_failures: int = 6
    ) -> None:
        self.conn = conn
        self.gateway = gateway
        self.job_id = job_id
        self.display = display
        self.max_failures = max_failures
        self.last: dict[str, Any] | None = None

    @property
    def ws_url(self) -> str:
        return f"{self.conn.ws_base}/jobs/{quote(self.job_id, safe='')}/ws"

    def run(self) -> dict[str, Any]:
        failures = 0
        while True:
            try:
                final = self._stream()
            except InvalidStatus as exc:
                # Not even a WebSocket: something between us and the gateway refused the upgrade.
                self.display.note(f"no WebSocket ({exc.response.status_code}); polling the job instead")
                return self._poll()
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
                failures += 1
                if failures >= self.max_failures:
                    raise ClientError(
                        f"lost the connection to {self.ws_url} ({exc}); the job goes on: ifcflow watch {self.job_id}",
                        EXIT_UNREACHABLE,
                    ) from None
                self.display.note(f"connection lost ({exc}); reconnecting")
                time.sleep(min(8.0, 0.5 * 2 ** (failures - 1)))
                continue
            if final is not None:
                return final
            # Closed without a terminal message: ask once, and open a new socket if it is still going.
            view = self.gateway.job(self.job_id)
            if view.get("status") in TERMINAL_STATES:
                self._show({"event": view.get("status"), **view})
                return view
            failures = 0

    def _show(self, view: dict[str, Any]) -> None:
        self.last = view
        self.display.update(view)

    def _stream(self) -> dict[str, Any] | None:
        """Messages of one socket; the terminal view, or None when it closed before one."""
        with connect(self.ws_url, additional_headers=self.conn.headers(), open_timeout=_OPEN_TIMEOUT) as ws:
            try:
                for raw in ws:
                    view = json.loads(raw)
                    if not isinstance(view, dict):
                        continue
                    self._show(view)
                    if view.get("status") in TERMINAL_STATES:
                        return view
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code in _CLOSE_REASONS:
                    reason = _CLOSE_REASONS[code]
                    if code == 4404:
                        reason = f"job {self.job_id} not found"
                    raise ClientError(reason, EXIT_REFUSED) from None
                raise
        return None

    def _poll(self) -> dict[str, Any]:
        while True:
            view = self.gateway.job(self.job_id)
            self._show({"event": view.get("status"), **view})
            if view.get("status") in TERMINAL_STATES:
                return view
            time.sleep(_POLL_INTERVAL)
