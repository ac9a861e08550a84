"""The gateway's REST API from the client's side: one method per call, every failure a ``ClientError``."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from cli.connection import EXIT_REFUSED, EXIT_UNREACHABLE, ClientError, Connection

# Which upload route takes a file, by extension (the gateway's own lists, service/uploads.py).
UPLOAD_KINDS: dict[str, str] = {
    ".ifc": "ifc",
    ".ifczip": "ifc",
    ".ifcxml": "ifc",
    ".ids": "ids",
    ".xml": "ids",
    ".bcf": "bcf",
    ".bcfzip": "bcf",
    ".csv": "csv",
    ".xlsx": "csv",
    ".ods": "csv",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_FIELD_PREFIXES = ("body", "query", "path", "header")
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# Uploads and downloads of large models: no limit between two chunks beyond five minutes.
_TRANSFER_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
_CHUNK = 1024 * 1024


def upload_kind(path: Path) -> str:
    """``ifc``, ``ids``, ``bcf`` or ``csv``: the upload route for this file's extension."""
    kind = UPLOAD_KINDS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(UPLOAD_KINDS))
        raise ClientError(f"{path}: cannot tell what to upload it as from its extension (use one of {known})")
    return kind


def upload_name(path: Path) -> str:
    """The name the gateway accepts: letters, digits, '.', '_', '-', starting with a letter or digit."""
    name = _UNSAFE.sub("_", path.name).lstrip("._-")
    return name[:200] or "upload" + path.suffix.lower()


def describe_field(loc: list[Any]) -> str:
    """``["body", "clash_sets", 0, "a"]`` -> ``clash_sets[0].a``."""
    parts = list(loc)
    if parts and parts[0] in _FIELD_PREFIXES:
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def explain_detail(detail: Any) -> list[str]:
    """FastAPI's ``detail``, a string or a list of ``{loc, msg}``, as one line per problem."""
    if isinstance(detail, str):
        return [detail]
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if not isinstance(item, dict):
                lines.append(str(item))
                continue
            field = describe_field(item.get("loc") or [])
            msg = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            lines.append(f"{field}: {msg}" if field and not msg.startswith(f"{field}:") else msg)
        return lines
    return [str(detail)] if detail is not None else []


def _detail_of(response: httpx.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return [text[:300]] if text else []
    if isinstance(body, dict) and "detail" in body:
        return explain_detail(body["detail"])
    return [str(body)[:300]]


def refusal(response: httpx.Response) -> ClientError:
    """The error for a 4xx/5xx answer: what the gateway said, and what to do about it."""
    status = response.status_code
    lines = _detail_of(response)
    said = "; ".join(lines) or response.reason_phrase
    if status == 401:
        return ClientError(
            f"the gateway wants an API key ({said}): pass --api-key or set IFCFLOW_API_KEY "
            "(`ifcflow up` prints the key it uses)"
        )
    if status == 403:
        return ClientError(f"the gateway refused the API key ({said}): check --api-key or IFCFLOW_API_KEY")
    if status == 422:
        return ClientError("the gateway refused the request (422):\n" + "\n".join(f"  {line}" for line in lines))
    if status >= 500:
        return ClientError(f"the gateway failed ({status}): {said}", EXIT_UNREACHABLE)
    return ClientError(f"{status} {response.reason_phrase}: {said}", EXIT_REFUSED)


def _save(resp: httpx.Response, partial: Path) -> None:
    if resp.is_error:
        resp.read()
        raise refusal(resp)
    with partial.open("wb") as out:
        for chunk in resp.iter_bytes(_CHUNK):
            out.write(chunk)


class Gateway:
    """A synchronous client of one gateway (``with Gateway(conn) as gw: ...``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._http = httpx.Client(base_url=conn.url, headers=conn.headers(), timeout=_TIMEOUT)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _unreachable(self, exc: httpx.TransportError) -> ClientError:
        if isinstance(exc, httpx.TimeoutException):
            return ClientError(f"the gateway at {self.conn.url} did not answer in time ({exc!r})", EXIT_UNREACHABLE)
        return ClientError(
            f"cannot reach the gateway at {self.conn.url} ({exc}); is it running? Set --url or IFCFLOW_URL",
            EXIT_UNREACHABLE,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a 2xx answer to ``method path`` (None for a 204, which has none)."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.is_error:
            raise refusal(response)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"the gateway answered {method} {path} with something that is not JSON: {response.text[:200]!r}",
                EXIT_UNREACHABLE,
            ) from None

    # --- files ------------------------------------------------------------------------------------

    def upload(self, path: Path) -> str:
        """Upload a local file into the gateway's ``uploads/``; returns its path there."""
        kind = upload_kind(path)
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
        with handle:
            files = {"file": (upload_name(path), handle, "application/octet-stream")}
            body = self.call("POST", f"/upload/{kind}", files=files, timeout=_TRANSFER_TIMEOUT)
        return str(body["path"])

    def download(self, remote: str, dest_dir: Path) -> Path:
        """Fetch ``remote`` (a path in the data directory) into ``dest_dir`` under its own name."""
        target = dest_dir / PurePosixPath(remote).name
        partial = dest_dir / f".{target.name}.part"
        dest_dir.mkdir(parents=True, exist_ok=True)
        try:
            with self._http.stream("GET", "/files/" + quote(remote, safe="/"), timeout=_TRANSFER_TIMEOUT) as resp:
                if resp.is_redirect and "location" in resp.headers:
                    # The S3 backend redirects to a presigned URL of the bucket: fetched without the API
                    # key, which is the gateway's and no business of the store's.
                    with httpx.stream("GET", resp.headers["location"], timeout=_TRANSFER_TIMEOUT) as stored:
                        _save(stored, partial)
                else:
                    _save(resp, partial)
        except httpx.TransportError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise self._unreachable(exc) from None
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        os.replace(partial, target)
        return target

    # --- jobs -------------------------------------------------------------------------------------

    def submit(self, path: str, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        accepted: dict[str, Any] = self.call("POST", path, json=body, headers=headers)
        return accepted

    def job(self, job_id: str) -> dict[str, Any]:
        view: dict[str, Any] = self.call("GET", f"/jobs/{quote(job_id, safe='')}")
        return view

    def cancel(self, job_id: str) -> dict[str, Any]:
        view: dict[str, Any] = self.call("DELETE", f"/jobs/{quote(job_id, safe='')}")
        return view

    def requeue(self, job_id: str) -> dict[str, Any]:
        view: dict[str, Any] = self.call("POST", f"/jobs/{quote(job_id, safe='')}/requeue")
        return view

    def jobs(self, status: str | None, operation: str | None, limit: int) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        if operation:
            params["operation"] = operation
        page: dict[str, Any] = self.call("GET", "/jobs", params=params)
        return page

    # --- keys -------------------------------------------------------------------------------------

    def create_key(self, project: str, role: str, name: str) -> dict[str, Any]:
        made: dict[str, Any] = self.call("POST", "/keys", json={"project": project, "role": role, "name": name})
        return made

    def list_keys(self, project: str | None) -> list[dict[str, Any]]:
        listed: dict[str, Any] = self.call("GET", "/keys", params={"project": project} if project else None)
        return list(listed.get("keys") or [])

    def revoke_key(self, key_id: str) -> None:
        self.call("DELETE", f"/keys/{quote(key_id, safe='')}")
