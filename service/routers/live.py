"""Live job status: WebSockets for one job or all jobs, and Server-Sent Events for one job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from service.deps import ApiKeyDep
from service.live.auth import CLOSE_NOT_FOUND, authenticate
from service.live.events import Event, message
from service.live.hub import JobEventHub
from service.routers.jobs import JobId, not_found
from settings import Settings
from store.job_view import TERMINAL, JobStatus

router = APIRouter(tags=["live"])
_KEEPALIVE_S = 15.0


def _hub(conn: Request | WebSocket) -> JobEventHub:
    return cast(JobEventHub, conn.state.events)


def _split(value: str | None) -> set[str] | None:
    return {v.strip() for v in value.split(",") if v.strip()} if value else None


@router.websocket("/jobs/{job_id}/ws")
async def job_socket(ws: WebSocket, job_id: JobId) -> None:
    """The job's snapshot, then a message on every change; closed after a terminal state."""
    settings = cast(Settings, ws.state.settings)
    caller = await authenticate(ws, settings)
    if caller is None:
        return
    hub = _hub(ws)
    sub = hub.subscribe(job_id, caller=caller)  # before the snapshot, so no change between the two is missed
    try:
        await hub.watching(sub)
        sub.discard_queued()
        view = await hub.read(job_id)
        if view is None or not caller.sees(view.project):  # another project's: as unknown as a missing one
            await ws.close(CLOSE_NOT_FOUND, f"job {job_id} not found")
            return
        hub.remember(view)
        await ws.send_text(message("snapshot", view).text_for(caller.project))
        if view.status in TERMINAL:
            await ws.close()
            return
        del view  # a socket may stay open for hours: keep nothing of the snapshot
        await sub.serve(ws, close_on_terminal=True)
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(sub)


@router.websocket("/ws/jobs")
async def all_jobs_socket(
    ws: WebSocket,
    operation: Annotated[str | None, Query(max_length=500)] = None,
    status: Annotated[str | None, Query(max_length=200)] = None,
) -> None:
    """Every job's changes of the key's project (an admin key: of every project), optionally only some
    operations and statuses (comma-separated)."""
    settings = cast(Settings, ws.state.settings)
    caller = await authenticate(ws, settings)
    if caller is None:
        return
    statuses = _split(status)
    if statuses and not statuses <= {s.value for s in JobStatus}:
        await ws.close(1008, f"status: use some of {', '.join(s.value for s in JobStatus)}")
        return
    hub = _hub(ws)
    sub = hub.subscribe(None, _split(operation), statuses, caller=caller)
    try:
        await hub.watching(sub)
        await sub.serve(ws, close_on_terminal=False)
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(sub)


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse)
async def job_events(job_id: JobId, request: Request, caller: ApiKeyDep) -> StreamingResponse:
    """The same events as the job's WebSocket, as Server-Sent Events."""
    hub = _hub(request)
    sub = hub.subscribe(job_id, caller=caller)
    try:
        await hub.watching(sub)
        sub.discard_queued()
        view = await hub.read(job_id)
    except BaseException:
        hub.unsubscribe(sub)
        raise
    if view is None or not caller.sees(view.project):
        hub.unsubscribe(sub)
        raise not_found(job_id)
    hub.remember(view)

    async def stream() -> AsyncIterator[str]:
        try:
            yield _sse(message("snapshot", view), sub.relative)
            if view.status in TERMINAL:
                return
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), _KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield _sse(item, sub.relative)
                if item.status in TERMINAL:
                    return
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def _sse(event: Event, relative: str) -> str:
    return f"event: {event.kind}\ndata: {event.text_for(relative)}\n\n"
