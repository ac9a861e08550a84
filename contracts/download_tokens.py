"""Download tokens: a file path and an expiry, signed with HMAC-SHA256, usable without the API key.

``<payload>.<signature>``, both base64url without padding; the payload is ``{"p": path, "e": expiry}``
(the full store key, Unix seconds: a link made in project A's view names ``projects/a/...`` and is
served from the whole store, so it gives A's file whoever follows it). Nothing is stored: any gateway
with the same secret (``IFCFLOW_DOWNLOAD_SECRET``) honours a token until it expires, and a token cannot
be changed to name another file or a later expiry without the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from access.scope import store_key
from storage.base import Storage

_MAX_TOKEN = 4096


class TokenRefused(ValueError):
    """A token that is malformed, forged, altered (403) or expired (410)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True, slots=True)
class Grant:
    path: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def mint(secret: bytes, path: str, ttl_s: int, now: float | None = None) -> tuple[str, Grant]:
    """A token granting ``path`` for ``ttl_s`` seconds from ``now``."""
    grant = Grant(path, int(time.time() if now is None else now) + ttl_s)
    payload = _b64(json.dumps({"p": grant.path, "e": grant.expires_at}, separators=(",", ":")).encode())
    return f"{payload}.{_signature(secret, payload)}", grant


def mint_for(secret: bytes, view: Storage, rel: str, ttl_s: int, now: float | None = None) -> tuple[str, Grant]:
    """A token granting the view-relative key ``rel`` of ``view`` (a project's view or the whole store):
    the token names its full store key."""
    return mint(secret, store_key(view, rel), ttl_s, now)


def verify(secret: bytes, token: str, now: float | None = None) -> Grant:
    """The grant of a genuine, unexpired token; ``TokenRefused`` otherwise."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or len(token) > _MAX_TOKEN:
        raise TokenRefused(403, "invalid download token")
    if not hmac.compare_digest(_signature(secret, payload), signature):
        raise TokenRefused(403, "invalid download token: its signature does not match (altered or forged)")
    try:
        data = json.loads(_unb64(payload))
        grant = Grant(str(data["p"]), int(data["e"]))
    except (ValueError, KeyError, TypeError):
        raise TokenRefused(403, "invalid download token") from None
    if (time.time() if now is None else now) >= grant.expires_at:
        raise TokenRefused(410, "download token expired; create a new link with POST /create_download_link")
    return grant
