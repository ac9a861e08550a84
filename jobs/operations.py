"""The job functions, one per operation: validate, call the operation's service, retry what is transient."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from arq import Retry

from contracts import stats
from contracts.operations import OPERATIONS, Operation
from contracts.requests import REQUEST_MODELS
from contracts.serialization import JobError
from contracts.wire import ErrorInfo
from jobs import job_record, metrics, reaper, result_cache
from jobs.backoff import retry_delay
from jobs.context import WorkerContext
from jobs.errors import TransientServiceError
from jobs.service_client import call_service

log = structlog.get_logger("jobs")


async def run_operation(
    ctx: WorkerContext, op: Operation, request: dict[str, Any], request_id: str | None
) -> dict[str, Any]:
    """Run one try of ``op``; raises ``Retry`` while tries remain for a transient failure."""
    redis, settings, job_id, attempt = ctx["redis"], ctx["settings"], ctx["job_id"], ctx["job_try"]
    spec = OPERATIONS[op]
    structlog.contextvars.bind_contextvars(
        job_id=job_id, operation=op.value, attempt=attempt, request_id=request_id
    )
    counters = ctx["counters"]
    counters["running"] += 1
    started = time.perf_counter()
    await reaper.record_start(redis, ctx["worker_id"], job_id)
    # after_job_end gets this same ctx: what it must do for this job travels with it.
    ctx["job_hooks"] = hooks = await job_record.mark_started(redis, job_id, attempt)
    if attempt == 1:
        # Waiting starts at submit, or when due for a deferred job; a priority moves the score back.
        due = max(ctx["enqueue_time"].timestamp(), ctx["score"] / 1000)
        await metrics.observe_queue_wait(redis, op.value, time.time() - due)
    log.info("job.started")

    async def on_progress(percent: float, phase: str) -> None:
        await job_record.set_progress(redis, job_id, percent, phase)

    def elapsed_s() -> float:
        return time.perf_counter() - started

    def elapsed_ms() -> float:
        return round(elapsed_s() * 1000, 1)

    try:
        # Anything that reached the queue without the gateway (arq CLI, scripts) is checked here too.
        body = REQUEST_MODELS[op].model_validate(request).model_dump(mode="json", by_alias=True)
        cached = None
        if hooks.get("cache"):
            cache_key, outputs = await result_cache.cache_key(redis, settings.data_dir, op, body)
            cached = await result_cache.reuse(redis, settings.data_dir, cache_key, outputs)
        if cached is not None:
            result = cached
            log.info("job.cache_hit", cache_key=cache_key)
        else:
            result = await call_service(
                ctx["http"],
                service=spec.service,
                url=settings.operation_url(op),
                body=body,
                job_id=job_id,
                request_id=request_id,
                on_progress=on_progress,
            )
            if hooks.get("cache"):
                await result_cache.remember(redis, cache_key, outputs, result, settings.cache_ttl)
    except TransientServiceError as exc:
        if attempt >= settings.max_tries:
            counters["failed"] += 1
            await job_record.mark_finished(redis, job_id, settings.result_ttl)
            await metrics.count_outcome(redis, op.value, "failed", elapsed_s())
            log.warning("job.failed", reason=exc.message, duration_ms=elapsed_ms())
            raise JobError(
                ErrorInfo(
                    type="service_unavailable",
                    message=f"gave up after {attempt} tries: {exc.message}",
                    service=spec.service,
                    status_code=exc.status_code,
                )
            ) from exc
        delay = retry_delay(attempt, settings.retry_backoff, settings.retry_backoff_max, exc.retry_after)
        await job_record.mark_retrying(redis, job_id, attempt, exc.message, delay)
        counters["retried"] += 1
        await metrics.count_outcome(redis, op.value, "retried", None)
        log.info("job.retrying", reason=exc.message, delay_s=round(delay, 2), duration_ms=elapsed_ms())
        raise Retry(defer=delay) from exc
    except ValueError as exc:  # pydantic's ValidationError
        counters["failed"] += 1
        await job_record.mark_finished(redis, job_id, settings.result_ttl)
        await metrics.count_outcome(redis, op.value, "failed", elapsed_s())
        log.warning("job.failed", reason=str(exc), duration_ms=elapsed_ms())
        raise JobError(ErrorInfo(type="invalid_request", message=str(exc))) from exc
    except JobError as exc:
        counters["failed"] += 1
        await job_record.mark_finished(redis, job_id, settings.result_ttl)
        await metrics.count_outcome(redis, op.value, "failed", elapsed_s())
        log.warning("job.failed", reason=exc.info.message, status_code=exc.info.status_code, duration_ms=elapsed_ms())
        raise
    except asyncio.CancelledError:
        # arq cancels the task on abort, on its time limit and on shutdown; only the clock tells them
        # apart here (a shutdown counts as an abort: the job goes back to the queue and runs again).
        timed_out = elapsed_s() >= settings.timeout_for(op) - 0.5
        outcome: stats.Outcome = "failed" if timed_out else "aborted"
        await asyncio.shield(metrics.count_outcome(redis, op.value, outcome, elapsed_s()))
        log.warning("job.failed" if timed_out else "job.aborted", duration_ms=elapsed_ms())
        raise
    finally:
        counters["running"] -= 1
        await asyncio.shield(reaper.record_end(redis, ctx["worker_id"], job_id))
    counters["complete"] += 1
    await job_record.mark_finished(redis, job_id, settings.result_ttl)
    await metrics.count_outcome(redis, op.value, "completed", elapsed_s())
    log.info("job.completed", duration_ms=elapsed_ms())
    return result


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
