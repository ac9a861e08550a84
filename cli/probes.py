"""Small, dependency-free checks: free ports, HTTP endpoints, Redis."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

import redis


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def http_get(url: str, timeout: float = 2.0) -> tuple[int, Any] | None:
    """``(status, JSON body or None)``, or None when nothing answers."""
    try:
        # Only ever the http:// URLs of the processes `ifcflow up` started itself: no file:// or other scheme.
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310  # nosec B310
            status, raw = int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = int(exc.code), exc.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def redis_pings(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def url_host(host: str) -> str:
    """The host to put in a URL for a server bound to ``host`` (wildcards mean this machine)."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (a comparison, not a bind)  # nosec B104
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
