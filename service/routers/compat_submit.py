"""What the ifcpipeline routes that queue a job share: the generic submit, and waiting for a job's end.

These routes check more than an operation's body can (a URL's addresses, a recipe's arguments), then
hand the body to the operation's own submit route (``service.routers.operations``), so that paths,
callbacks, idempotency and enqueueing stay one piece of code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from access.grants import Caller
from contracts.operations import OPERATIONS, Operation
from service.live.hub import JobEventHub
from service.routers import operations
from store.job_view import TERMINAL, JobView

SubmitEndpoint = Callable[..., Awaitable[Response]]


def generic_submit(op: Operation) -> SubmitEndpoint:
    """The operation's own submit route (the one ``service.routers.operations`` registers)."""
    path = OPERATIONS[op].path
    for route in operations.router.routes:
        if isinstance(route, APIRoute) and route.path == path and "POST" in (route.methods or ()):
            return cast(SubmitEndpoint, route.endpoint)
    raise LookupError(f"no submit route for {op.value}")


def body_model(op: Operation) -> type[BaseModel]:
    """The operation's body model: its request and the job options, as the generic route validates it."""
    return operations.BODY_MODELS[op]


async def submit(op: Operation, request: Request, body: BaseModel, api_key: Caller,
                 idempotency_key: str | None) -> Response:
    """Submit ``body`` as the generic route would: 202 (or 200 for a replay) with the job's id."""
    return await generic_submit(op)(request, body, api_key, idempotency_key)


async def wait_for_end(request: Request, job_id: str, seconds: float) -> JobView | None:
    """The job's view once it ended, or None when it has not within ``seconds`` (or is unknown)."""
    hub = cast(JobEventHub, request.state.events)
    sub = hub.subscribe(job_id)  # before the first read, so no change between the two is missed
    try:
        await hub.watching(sub)
        sub.discard_queued()
        view = await hub.read(job_id)
        if view is None or view.status in TERMINAL:
            return view
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    item = await sub.queue.get()
                    if item.status in {s.value for s in TERMINAL}:
                        break
        view = await hub.read(job_id)
        return view if view is not None and view.status in TERMINAL else None
    finally:
        hub.unsubscribe(sub)


def job_fields(response: Response) -> dict[str, Any]:
    """The ``job_id``, ``status``, ``status_url`` and ``ws_url`` of a submit's answer."""
    return cast(dict[str, Any], orjson.loads(bytes(response.body)))
