"""Putting a new job on the queue: its id, when it is due, and the one Redis call that makes it."""

from __future__ import annotations

import hashlib
from typing import Any

import structlog

from contracts.operations import Operation
from service.batching import CreateBatcher
from service.schemas import JobOptions
from store.job_store import NewJob, new_job_id, now_ms

# Longest Idempotency-Key header accepted; longer ones are refused with 422 before anything is made.
IDEMPOTENCY_KEY_MAX = 255


def job_id_for(idempotency_key: str | None, api_key: str) -> str:
    """A new random id, or one derived from the key, scoped to the caller so callers never collide."""
    if not idempotency_key:
        return new_job_id()
    digest = hashlib.sha256(f"{api_key}\0{idempotency_key}".encode()).hexdigest()
    return f"idem-{digest[:32]}"


def due_ms(options: JobOptions) -> int | None:
    """When a deferred job is due (epoch ms), or None to run now."""
    if options.defer_until is not None:
        return int(options.defer_until.timestamp() * 1000)
    if options.defer_by:
        return now_ms() + int(options.defer_by * 1000)
    return None


async def submit(
    creates: CreateBatcher,
    op: Operation,
    request: dict[str, Any],
    options: JobOptions,
    *,
    job_id: str,
    request_id: str | None,
    fresh_id: bool,
) -> bool:
    """Record and enqueue a job under ``job_id`` in one atomic step.

    True when made; False when that id exists already for the same request (a replay: nothing is
    enqueued). ``store.job_store.IdempotencyConflict`` when it exists for another request. ``fresh_id``
    says the id was just drawn by ``new_job_id``, so no earlier job can hold it.
    """
    meta = {"callback_url": options.callback_url} if options.callback_url else {}
    if options.cache:
        meta["cache"] = "1"
    # Said once, on the request's own log line (http.request) rather than a line of its own.
    structlog.contextvars.bind_contextvars(job_id=job_id, operation=op.value, priority=options.priority)
    job = NewJob(
        op, request, job_id, request_id=request_id, priority=options.priority, due_ms=due_ms(options), meta=meta,
        fresh_id=fresh_id,
    )
    return await creates.create(job)
