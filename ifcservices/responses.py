"""HTTP answers of an operation: one JSON object, or NDJSON progress lines ending in a result or error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from contracts.storage_full import storage_full_reason
from contracts.wire import NDJSON, ErrorBody, ErrorEvent, ProgressEvent
from ifcservices.errors import Busy, ServiceError, StorageFull, is_storage_full
from ifcservices.service import RETRY_AFTER_SECONDS

log = structlog.get_logger("ifcservices.responses")

# An NDJSON stream repeats its last progress line when the child has been silent this long, so that
# proxies and the worker's read timeout see a live connection through hours of clash detection.
HEARTBEAT_SECONDS = 15.0
_DISCONNECT_POLL_SECONDS = 1.0

Event = tuple[float, str] | None  # progress, or None once the operation has ended


def error_response(service: str, error: ServiceError) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(error, Busy) else None
    body = ErrorBody(error=error.info(service))
    return JSONResponse(body.model_dump(), status_code=error.status_code, headers=headers)


def _unexpected(error: BaseException) -> ServiceError:
    if is_storage_full(error):
        # The service's own scratch space (a child's work folder) is full: the same clear failure as
        # a full data directory, a warning rather than a traceback.
        log.warning("storage full", error=str(error))
        return StorageFull(f"storage full: {storage_full_reason(error)} in the IFC service's work folder")
    log.error("operation failed unexpectedly", exc_info=error)
    return ServiceError("internal error in the IFC service")


async def json_answer(service: str, task: asyncio.Task[bytes], request: Request) -> Response:
    """Wait for ``task`` and answer with its result; a client that hangs up cancels it (and its child)."""
    while True:
        done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_SECONDS)
        if done:
            break
        if await request.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # the child is dead once this returns
            # Nobody reads this answer; 499 is what proxies log for a client that closed the request.
            return Response(status_code=499)
    try:
        return Response(task.result(), media_type="application/json")
    except ServiceError as error:
        return error_response(service, error)
    except Exception as error:
        return error_response(service, _unexpected(error))


def _line(event: ProgressEvent | ErrorEvent) -> bytes:
    return event.model_dump_json().encode() + b"\n"


async def ndjson_lines(service: str, task: asyncio.Task[bytes], events: asyncio.Queue[Event]) -> AsyncIterator[bytes]:
    """Progress lines while ``task`` runs, then its result or error line. Closing the stream early
    (the client hung up) cancels the task, which kills the child."""
    last = ProgressEvent(percent=0.0, phase="started")
    try:
        yield _line(last)
        while True:
            try:
                event = await asyncio.wait_for(events.get(), timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                yield _line(last)
                continue
            if event is None:
                break
            last = ProgressEvent(percent=event[0], phase=event[1])
            yield _line(last)
        try:
            raw = task.result()
        except ServiceError as error:
            yield _line(ErrorEvent(error=error.info(service)))
        except Exception as error:
            yield _line(ErrorEvent(error=_unexpected(error).info(service)))
        else:
            # The child wrote compact single-line JSON: embedded as is, never parsed here.
            yield b'{"event":"result","result":' + raw + b"}\n"
    finally:
        if not task.done():
            task.cancel()


def wants_ndjson(request: Request) -> bool:
    return NDJSON in request.headers.get("accept", "")
