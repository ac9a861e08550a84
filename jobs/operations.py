"""The job function of every operation: validate, call the operation's service, retry what is transient.

One function serves all eight operations (``job_function(op)`` binds which); what a try records
about itself is written by arq's hooks (``jobs/hooks.py``) from the ``TryEnd`` it leaves in ``ctx``.
"""

from __future__ import annotations

import asyncio
import random
import time
from functools import partial
from typing import Any

import structlog
from arq import Retry

from contracts.operations import OPERATIONS, Operation
from contracts.requests import REQUEST_MODELS
from contracts.wire import ErrorInfo
from jobs import aborts, result_cache
from jobs.backoff import retry_delay
from jobs.context import WorkerContext
from jobs.errors import TransientServiceError
from jobs.service_client import call_service
from store import job_store, service_slots
from store.job_store import TryEnd
from store.serialization import JobError, error_info

log = structlog.get_logger("jobs")
# Longest pause between two looks for a free slot of a service (arq's own claims only).
_MAX_SLOT_PAUSE = 1.0
# Longest pause before calling a service again that answered "busy" (with the claim's slots, rare).
_BUSY_PAUSE = 2.0


def _waited_too_long(service: str, limit_s: int) -> JobError:
    return JobError(ErrorInfo(
        type="timeout", service=service,
        message=f"timed out waiting for {service}: it had no free slot within the job's time limit of {limit_s} s",
    ))


async def _hold_service_slot(ctx: WorkerContext, op: Operation, started: float) -> None:
    """Hold a slot of the operation's service before calling it: the claim took one already
    (``python -m jobs``), or, under arq's own claims, wait here for one, holding no connection."""
    service, limit_s = OPERATIONS[op].service, ctx["settings"].timeout_for(op)
    start = ctx.get("job")
    if start is not None and start.slot == "expired":
        raise _waited_too_long(service, limit_s)
    if start is not None and start.slot in ("held", "free"):
        return
    # The job's own time limit covers the wait; give up just before arq would cancel the try.
    deadline, pause = started + limit_s - 1.0, 0.05
    while not await service_slots.acquire(ctx["redis"], service, ctx["job_id"]):
        if time.perf_counter() + pause >= deadline:
            raise _waited_too_long(service, limit_s)
        await asyncio.sleep(pause * random.uniform(0.5, 1.0))
        pause = min(pause * 2, _MAX_SLOT_PAUSE)


async def _execute(
    ctx: WorkerContext, op: Operation, body: dict[str, Any], request_id: str | None, started: float
) -> dict[str, Any]:
    """The operation's result: from the cache when asked and found, else from its service."""
    redis, settings, job_id = ctx["redis"], ctx["settings"], ctx["job_id"]
    cache_key: str | None = None
    if "job" in ctx and "cache" in ctx["job"].hooks:
        cache_key, outputs = await result_cache.cache_key(ctx["storage"], op, body)
        cached = None if cache_key is None else await result_cache.reuse(redis, ctx["storage"], cache_key, outputs)
        if cached is not None:
            log.info("job.cache_hit", cache_key=cache_key)
            return cached

    async def on_progress(percent: float, phase: str) -> None:
        await job_store.set_progress(redis, job_id, percent, phase)

    await _hold_service_slot(ctx, op, started)
    result = await call_service(
        ctx["http"],
        service=OPERATIONS[op].service,
        url=settings.operation_url(op),
        body=body,
        job_id=job_id,
        request_id=request_id,
        on_progress=on_progress,
    )
    if cache_key is not None:
        await result_cache.remember(redis, ctx["storage"], cache_key, outputs, result, settings.cache_ttl)
    return result


async def run_operation(
    ctx: WorkerContext, op: Operation, request: dict[str, Any], request_id: str | None
) -> dict[str, Any]:
    """Run one try of ``op``; raises ``Retry`` while tries remain for a transient failure."""
    settings, attempt = ctx["settings"], ctx["job_try"]
    started = time.perf_counter()
    try:
        # Anything that reached the queue without the gateway (arq's API, scripts) is checked here too.
        body = REQUEST_MODELS[op].model_validate(request).model_dump(mode="json", by_alias=True)
        result = await aborts.abortable(ctx, _execute(ctx, op, body, request_id, started))
    except TransientServiceError as exc:
        service, start = OPERATIONS[op].service, ctx.get("job")
        if exc.busy:
            # Waiting for capacity is not a failed try; the job's time limit bounds the whole wait.
            since_ms = start.busy_since_ms if start is not None and start.busy_since_ms else job_store.now_ms()
            if job_store.now_ms() - since_ms >= settings.timeout_for(op) * 1000:
                error = _waited_too_long(service, settings.timeout_for(op)).info
                _ended(ctx, TryEnd("failed", error=error), started)
                raise JobError(error) from exc
            delay = random.uniform(0.5, 1.0) * min(exc.retry_after or _BUSY_PAUSE, _BUSY_PAUSE)
            _ended(ctx, TryEnd("retry", retry_reason=f"waiting for {service}: {exc.message}", retry_delay_s=delay,
                               busy=True), started)
            raise Retry(defer=delay) from exc
        tries = attempt - (start.busy_tries if start is not None else 0)
        if tries >= settings.max_tries:
            error = ErrorInfo(type="service_unavailable", message=f"gave up after {tries} tries: {exc.message}",
                              service=service, status_code=exc.status_code)
            _ended(ctx, TryEnd("failed", error=error), started)
            raise JobError(error) from exc
        delay = retry_delay(tries, settings.retry_backoff, settings.retry_backoff_max, exc.retry_after)
        _ended(ctx, TryEnd("retry", retry_reason=exc.message, retry_delay_s=delay), started)
        raise Retry(defer=delay) from exc
    except ValueError as exc:  # pydantic's ValidationError
        error = ErrorInfo(type="invalid_request", message=str(exc))
        _ended(ctx, TryEnd("failed", error=error), started)
        raise JobError(error) from exc
    except JobError as exc:
        _ended(ctx, TryEnd("aborted" if exc.info.type == "aborted" else "failed", error=exc.info), started)
        raise
    except asyncio.CancelledError:
        # arq cancels the task at its time limit, and on shutdown (the job then goes back to the queue).
        if time.perf_counter() - started >= settings.timeout_for(op) - 0.5:
            error = ErrorInfo(type="timeout", message=f"job exceeded its time limit of {settings.timeout_for(op)} s")
            _ended(ctx, TryEnd("failed", error=error), started)
        else:
            _ended(ctx, TryEnd("interrupted"), started)
        raise
    except Exception as exc:
        _ended(ctx, TryEnd("failed", error=error_info(exc)), started)
        raise
    _ended(ctx, TryEnd("complete", result=result), started)
    return result


def _ended(ctx: WorkerContext, end: TryEnd, started: float) -> None:
    ctx["try_end"] = end
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    reason = end.error.message if end.error else end.retry_reason or None
    if end.outcome == "complete":
        log.info("job.completed", duration_ms=duration_ms)
    elif end.outcome == "retry":
        log.info("job.retrying", reason=reason, delay_s=round(end.retry_delay_s, 2), duration_ms=duration_ms)
    elif end.outcome == "interrupted":
        log.warning("job.interrupted", duration_ms=duration_ms)
    else:
        status_code = end.error.status_code if end.error else None
        log.warning(f"job.{end.outcome}", reason=reason, status_code=status_code, duration_ms=duration_ms)


async def _operation_job(
    ctx: WorkerContext, *, operation: Operation, request: dict[str, Any], request_id: str | None = None
) -> dict[str, Any]:
    return await run_operation(ctx, operation, request, request_id)


def job_function(op: Operation) -> Any:
    """The job function arq runs for ``op`` (registered under the operation's name)."""
    return partial(_operation_job, operation=op)
