"""One call to an IFC service: post the request, relay progress, classify failures."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from contracts.wire import JOB_ID_HEADER, NDJSON, REQUEST_ID_HEADER, ErrorInfo
from jobs.errors import TransientServiceError
from store.serialization import JobError

log = structlog.get_logger("jobs.service")

ProgressCallback = Callable[[float, str], Awaitable[None]]
# The job's own time limit (arq's per-function timeout) bounds the whole call; this only bounds connecting.
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=10)
_MAX_DETAIL = 2000
STORAGE_FULL_STATUS = 507  # Insufficient Storage: ifcservices.errors.StorageFull
UNAVAILABLE_STATUS = 503  # ifcservices.errors.StoreUnavailable, sent as a stream's error event


async def _error_detail(resp: aiohttp.ClientResponse) -> tuple[str, str | None]:
    """The service's own message from an error response, whatever shape it has, and its error type."""
    text = (await resp.text(errors="replace"))[:_MAX_DETAIL * 4]
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:_MAX_DETAIL] or resp.reason or f"HTTP {resp.status}", None
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict) and "message" in body["error"]:
            kind = body["error"].get("type")
            return str(body["error"]["message"])[:_MAX_DETAIL], kind if isinstance(kind, str) else None
        if "detail" in body:
            detail = body["detail"]
            return (detail if isinstance(detail, str) else json.dumps(detail))[:_MAX_DETAIL], None
    return text[:_MAX_DETAIL], None


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    try:
        return float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None


async def _lines(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body's lines, however long: aiohttp's own line reader refuses lines past its buffer
    (512 KiB), and a result line (a clash list, an IDS report) can be many megabytes."""
    pending = bytearray()
    async for chunk in resp.content.iter_any():
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield bytes(pending[start:end])
            start = end + 1
        del pending[:start]
    if pending:
        yield bytes(pending)


async def _read_stream(resp: aiohttp.ClientResponse, service: str, on_progress: ProgressCallback) -> dict[str, Any]:
    async for raw in _lines(resp):
        line = raw.strip()
        if not line:
            continue
        event = json.loads(line)
        kind = event.get("event")
        if kind == "progress":
            await on_progress(float(event.get("percent", 0)), str(event.get("phase", "")))
        elif kind == "result":
            return dict(event["result"])
        elif kind == "error":
            info = ErrorInfo.model_validate({**event["error"], "service": service})
            if info.status_code == UNAVAILABLE_STATUS:
                # The service's store (S3) was unreachable mid-job, after the stream had started.
                raise TransientServiceError(f"{service}: {info.message}", status_code=info.status_code)
            raise JobError(info)
    raise TransientServiceError(f"{service} closed its progress stream without a result")


async def call_service(
    session: aiohttp.ClientSession,
    *,
    service: str,
    url: str,
    body: dict[str, Any],
    job_id: str,
    request_id: str | None,
    on_progress: ProgressCallback,
) -> dict[str, Any]:
    """POST ``body`` to ``url`` and return the service's result.

    Raises ``TransientServiceError`` for what a retry may fix and ``JobError`` for what it will not.
    """
    headers = {JOB_ID_HEADER: job_id, "Accept": f"{NDJSON}, application/json"}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    started = time.perf_counter()
    status: int | None = None
    try:
        async with session.post(url, json=body, headers=headers, timeout=_TIMEOUT) as resp:
            status = resp.status
            if resp.status == STORAGE_FULL_STATUS:
                # The service's storage is full: failed at once, not retried (a retry would fill it
                # again with another partial output); requeue the job once there is room.
                detail, kind = await _error_detail(resp)
                raise JobError(ErrorInfo(type=kind or "storage_full", message=detail, service=service,
                                         status_code=resp.status))
            if resp.status == 429 or resp.status >= 500:
                detail, kind = await _error_detail(resp)
                raise TransientServiceError(
                    f"{service} answered {resp.status}: {detail}",
                    status_code=resp.status,
                    retry_after=_retry_after(resp),
                    busy=resp.status == 429 or kind == "busy",
                )
            if resp.status >= 400:
                detail, _ = await _error_detail(resp)
                raise JobError(
                    ErrorInfo(type="service_error", message=detail, service=service, status_code=resp.status)
                )
            if resp.content_type == NDJSON:
                return await _read_stream(resp, service, on_progress)
            result = await resp.json(content_type=None)
            if not isinstance(result, dict):
                raise JobError(ErrorInfo(type="service_error", message="result is not a JSON object", service=service))
            return result
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
        raise TransientServiceError(f"{service} unreachable: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
    except (ValueError, KeyError) as exc:
        raise JobError(ErrorInfo(type="service_error", message=f"malformed response: {exc}", service=service)) from exc
    finally:
        log.info(
            "service.call",
            service=service,
            url=url,
            status_code=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
