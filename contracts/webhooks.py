"""Webhooks: which callback URLs are allowed, and how a delivery is signed (receivers verify the same way).

Signature header: ``X-Ifcflow-Signature: t=<unix seconds>,v1=<hex>``, where ``hex`` is
HMAC-SHA256(secret, "<t>.<raw body>"). Receivers recompute it over the raw body, compare in constant
time, and refuse timestamps older than a few minutes (replays).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import time
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Ifcflow-Signature"
EVENT_HEADER = "X-Ifcflow-Event"
DELIVERY_HEADER = "X-Ifcflow-Delivery"


class CallbackRefused(ValueError):
    pass


def check_callback_url(url: str, allowed_hosts: list[str]) -> str:
    """The URL if its scheme is http(s) and its host is on the allowlist; else ``CallbackRefused``."""
    try:
        # urlsplit and .port raise ValueError for a bad port, a bracketed non-IP host or NFKC tricks.
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError as exc:
        raise CallbackRefused(f"callback_url: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise CallbackRefused("callback_url: must be an http or https URL")
    if parts.username or parts.password:
        raise CallbackRefused("callback_url: must not carry credentials")
    host = hostname.lower()
    with_port = f"{host}:{port}" if port else host
    patterns = [p.lower() for p in allowed_hosts]
    if not any(fnmatch.fnmatchcase(host, p) or fnmatch.fnmatchcase(with_port, p) for p in patterns):
        raise CallbackRefused(
            f"callback_url: host {host!r} is not allowed (the server's IFCFLOW_CALLBACK_ALLOWED_HOSTS)"
        )
    return url


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    """What a receiver does: True when the signature matches and is recent."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


DELIVER_FUNCTION = "deliver_webhook"  # an internal arq function: never an operation clients can name

