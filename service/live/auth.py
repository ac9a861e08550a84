"""API keys on sockets: browsers cannot set headers there, so a query parameter or a first message do.

The query parameter is read as Starlette decodes it: ``?api%5Fkey=`` is ``api_key`` (RFC 3986 makes
``%5F`` and ``_`` one character), and the log pipeline redacts names after the same decoding
(settings/redaction.py), so a key that authenticates is never logged, however it was spelled.
"""

from __future__ import annotations

import asyncio
import json
from typing import cast

from fastapi import WebSocket

from access.grants import ANONYMOUS, Caller
from access.keyring import KeyRing
from access.quotas import QuotaExceeded, check_rate
from settings import Settings

# Close codes: 4401/4403 mirror HTTP's 401 (no key) and 403 (wrong key).
CLOSE_NO_KEY = 4401
CLOSE_BAD_KEY = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_BIG = 1009  # RFC 6455: a message too big to process
CLOSE_TRY_LATER = 1013  # RFC 6455 (registered): the project's request rate is used up
_FIRST_MESSAGE_WAIT_S = 5.0
# A key message is {"api_key": "..."}: anything longer before authentication is not one. uvicorn's
# --ws-max-size (service/http_limits.py) bounds what it buffers before this check sees it.
FIRST_MESSAGE_MAX_CHARS = 4096


async def authenticate(ws: WebSocket, settings: Settings) -> Caller | None:
    """Accept the socket and check its key: the caller, or None after closing it with 4401 or 4403."""
    await ws.accept()
    if settings.allow_anonymous and not settings.api_keys:
        return ANONYMOUS
    key = ws.headers.get("x-api-key") or ws.query_params.get("api_key")
    if not key:
        try:
            first = await asyncio.wait_for(ws.receive_text(), _FIRST_MESSAGE_WAIT_S)
        except (TimeoutError, RuntimeError, KeyError):
            first = ""
        if len(first) > FIRST_MESSAGE_MAX_CHARS:
            await ws.close(CLOSE_TOO_BIG, f"first message over {FIRST_MESSAGE_MAX_CHARS} characters: send the key")
            return None
        try:
            parsed = json.loads(first)
            key = parsed.get("api_key") if isinstance(parsed, dict) else None
        except ValueError:
            key = first.strip() or None
    if not key:
        await ws.close(CLOSE_NO_KEY, "missing API key")
        return None
    caller = await cast(KeyRing, ws.state.keyring).authenticate(str(key))
    if caller is None:
        await ws.close(CLOSE_BAD_KEY, "invalid API key")
        return None
    try:
        await check_rate(ws.state.redis, settings, caller)
    except QuotaExceeded as exc:
        await ws.close(CLOSE_TRY_LATER, exc.message[:120])  # a close reason holds at most 123 bytes
        return None
    return caller
