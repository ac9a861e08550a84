"""Where the client talks to: the gateway URL and the API key, from flags or the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8000"

# Exit codes of the client commands (argparse itself exits 2 on a bad command line).
EXIT_OK = 0
EXIT_JOB_FAILED = 1  # the job failed or was aborted
EXIT_REFUSED = 2  # the command or the request was wrong: bad arguments, 4xx
EXIT_UNREACHABLE = 3  # the gateway could not be reached, answered 5xx, or the connection broke


class ClientError(Exception):
    """A problem to report in one or a few lines, and the exit code it ends the command with."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Connection:
    url: str  # http(s)://host:port[/prefix], no trailing slash
    api_key: str | None

    @property
    def ws_base(self) -> str:
        """The WebSocket base URL of the same gateway: ws:// for http://, wss:// for https://."""
        return "ws" + self.url.removeprefix("http")

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}


def resolve_connection(url: str | None, api_key: str | None, environ: Mapping[str, str]) -> Connection:
    """The flag, else the environment: IFCFLOW_URL; IFCFLOW_API_KEY, else the key of the first entry of
    IFCFLOW_API_KEYS (a bare key, or the key of a ``project:role:key`` entry)."""
    chosen = (url or environ.get("IFCFLOW_URL") or DEFAULT_URL).strip().rstrip("/")
    parts = urlsplit(chosen)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"--url / IFCFLOW_URL must be an http:// or https:// URL, not {chosen!r}")
    key = api_key or environ.get("IFCFLOW_API_KEY") or None
    if key is None:
        configured = [k.strip() for k in environ.get("IFCFLOW_API_KEYS", "").split(",") if k.strip()]
        if configured:
            from access.grants import parse_entry  # only here: a key given outright needs none of it

            key = parse_entry(configured[0])[2]
    return Connection(url=chosen, api_key=key)
