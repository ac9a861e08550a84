"""The job functions, one per operation: validate, call the operation's service, retry what is transient."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from arq import Retry

from contracts.operations import OPERATIONS, Operation
from contracts.requests import REQUEST_MODELS
from contracts.wire import ErrorInfo
from jobs import aborts, job_record, result_cache
from jobs.backoff import retry_delay
from jobs.context import WorkerContext
from jobs.errors import TransientServiceError
from jobs.service_client import call_service
from store.serialization import JobError

log = structlog.get_logger("jobs")


async def _execute(
    ctx: WorkerContext, op: Operation, body: dict[str, Any], hooks: dict[str, str], request_id: str | None
) -> dict[str, Any]:
    """The operation's result: from the cache when asked and found, else from its service."""
    redis, settings, job_id = ctx["redis"], ctx["settings"], ctx["job_id"]
    if hooks.get("cache"):
        cache_key, outputs = await result_cache.cache_key(redis, settings.data_dir, op, body)
        cached = await result_cache.reuse(redis, settings.data_dir, cache_key, outputs)
        if cached is not None:
            log.info("job.cache_hit", cache_key=cache_key)
            return cached

    async def on_progress(percent: float, phase: str) -> None:
        await job_record.set_progress(redis, job_id, percent, phase)

    result = await call_service(
        ctx["http"],
        service=OPERATIONS[op].service,
        url=settings.operation_url(op),
        body=body,
        job_id=job_id,
        request_id=request_id,
        on_progress=on_progress,
    )
    if hooks.get("cache"):
        await result_cache.remember(redis, cache_key, outputs, result, settings.cache_ttl)
    return result


async def run_operation(
    ctx: WorkerContext, op: Operation, request: dict[str, Any], request_id: str | None
) -> dict[str, Any]:
    """Run one try of ``op``; raises ``Retry`` while tries remain for a transient failure."""
    redis, settings, job_id, attempt = ctx["redis"], ctx["settings"], ctx["job_id"], ctx["job_try"]
    structlog.contextvars.bind_contextvars(job_id=job_id, operation=op.value, attempt=attempt, request_id=request_id)
    counters = ctx["counters"]
    counters["running"] += 1
    started = time.perf_counter()
    # Waiting starts at submit, or when due for a deferred job (a priority moves the score back).
    waited = time.time() - max(ctx["enqueue_time"].timestamp(), ctx["score"] / 1000) if attempt == 1 else None
    # after_job_end gets this same ctx: what it must do for this job travels with it.
    ctx["job_hooks"] = hooks = await job_record.begin(
        redis, worker_id=ctx["worker_id"], job_id=job_id, attempt=attempt, operation=op.value, waited_s=waited
    )
    log.info("job.started")
    end = job_record.JobEnd(outcome="failed", result_ttl=settings.result_ttl)
    try:
        # Anything that reached the queue without the gateway (arq CLI, scripts) is checked here too.
        body = REQUEST_MODELS[op].model_validate(request).model_dump(mode="json", by_alias=True)
        result = await aborts.abortable(ctx, _execute(ctx, op, body, hooks, request_id))
    except TransientServiceError as exc:
        if attempt >= settings.max_tries:
            log.warning("job.failed", reason=exc.message, duration_ms=_ms(started))
            raise JobError(
                ErrorInfo(
                    type="service_unavailable",
                    message=f"gave up after {attempt} tries: {exc.message}",
                    service=OPERATIONS[op].service,
                    status_code=exc.status_code,
                )
            ) from exc
        delay = retry_delay(attempt, settings.retry_backoff, settings.retry_backoff_max, exc.retry_after)
        end = job_record.JobEnd(outcome="retried", retry=(attempt, exc.message, delay))
        log.info("job.retrying", reason=exc.message, delay_s=round(delay, 2), duration_ms=_ms(started))
        raise Retry(defer=delay) from exc
    except ValueError as exc:  # pydantic's ValidationError
        log.warning("job.failed", reason=str(exc), duration_ms=_ms(started))
        raise JobError(ErrorInfo(type="invalid_request", message=str(exc))) from exc
    except JobError as exc:
        end = job_record.JobEnd(outcome="aborted" if exc.info.type == "aborted" else "failed",
                                result_ttl=settings.result_ttl)
        log.warning("job.aborted" if exc.info.type == "aborted" else "job.failed", reason=exc.info.message,
                    status_code=exc.info.status_code, duration_ms=_ms(started))
        raise
    except asyncio.CancelledError:
        # arq cancels the task at its time limit and on shutdown (the job then goes back to the queue).
        timed_out = time.perf_counter() - started >= settings.timeout_for(op) - 0.5
        end = job_record.JobEnd(outcome="failed" if timed_out else None)
        log.warning("job.failed" if timed_out else "job.interrupted", duration_ms=_ms(started))
        raise
    else:
        end = job_record.JobEnd(outcome="completed", result_ttl=settings.result_ttl)
        log.info("job.completed", duration_ms=_ms(started))
        return result
    finally:
        counters["running"] -= 1
        if end.outcome in ("completed", "failed", "retried"):
            counters["complete" if end.outcome == "completed" else end.outcome] += 1
        await asyncio.shield(
            job_record.end(redis, worker_id=ctx["worker_id"], job_id=job_id, operation=op.value,
                           duration_s=time.perf_counter() - started, end=end)
        )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


async def ifcconvert(ctx: WorkerContext, *, request: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """Convert an IFC model to glTF, OBJ, ... with the convert service."""
    return await run_operation(ctx, Operation.ifcconvert, request, request_id)


async def ifcclash(ctx: WorkerContext, *, request: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """Run clash sets with the clash service."""
    return await run_operation(ctx, Operation.ifcclash, request, request_id)


async def ifccsv(ctx: WorkerContext, *, request: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """Export elements to CSV/XLSX/ODS with the csv service."""
    return await run_operation(ctx, Operation.ifccsv, request, request_id)


async def ifccsv_import(
    ctx: WorkerContext, *, request: dict[str, Any], request_id: str | None = None
) -> dict[str, Any]:
    """Import CSV edits back into an IFC model with the csv service."""
    return await run_operation(ctx, Operation.ifccsv_import, request, request_id)


async def ifctester(ctx: WorkerContext, *, request: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """Validate a model against an IDS with the tester service."""
    return await run_operation(ctx, Operation.ifctester, request, request_id)


async def ifcdiff(ctx: WorkerContext, *, request: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """Diff two models with the diff service."""
    return await run_operation(ctx, Operation.ifcdiff, request, request_id)


async def ifc2json(ctx: WorkerContext, *, request: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """Convert a model to JSON with the json service."""
    return await run_operation(ctx, Operation.ifc2json, request, request_id)


async def calculate_qtos(
    ctx: WorkerContext, *, request: dict[str, Any], request_id: str | None = None
) -> dict[str, Any]:
    """Quantity take-off with the ifc5d service."""
    return await run_operation(ctx, Operation.calculate_qtos, request, request_id)


JOB_FUNCTIONS = {
    Operation.ifcconvert: ifcconvert,
    Operation.ifcclash: ifcclash,
    Operation.ifccsv: ifccsv,
    Operation.ifccsv_import: ifccsv_import,
    Operation.ifctester: ifctester,
    Operation.ifcdiff: ifcdiff,
    Operation.ifc2json: ifc2json,
    Operation.calculate_qtos: calculate_qtos,
}
