"""The declarative worker: every function, cron job and knob arq needs, from one ``Settings``."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.operations import Operation
from contracts.webhooks import DELIVER_FUNCTION
from jobs.health import check_services
from jobs.job_end import after_job_end, fire_schedules, sweep_workflows
from jobs.lifecycle import shutdown, startup
from jobs.operations import JOB_FUNCTIONS
from jobs.webhooks import deliver_webhook
from settings import Settings
from store.redis_client import arq_redis_settings
from store.serialization import deserialize, serialize


def use_uvloop() -> None:
    """Run the worker on uvloop where installed (it comes with uvicorn[standard]): its thousands of
    concurrent HTTP calls cost markedly less CPU there than on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _cron_slots(period: int) -> dict[str, Any]:
    if period < 60:
        return {"second": set(range(0, 60, period))}
    return {"minute": set(range(0, 60, max(1, period // 60))), "second": 0}


def _redis_settings(settings: Settings) -> RedisSettings:
    redis_settings = arq_redis_settings(settings)
    # Ride out a Redis restart: each command retries with backoff for about a minute, silently,
    # instead of the worker crashing on the first refused connection.
    redis_settings.retry_on_error = [ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError]
    redis_settings.retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=40)
    redis_settings.conn_retries = 30
    redis_settings.conn_retry_delay = 1
    return redis_settings


def build_worker_settings(settings: Settings) -> type:
    """The class ``arq jobs.WorkerSettings`` runs."""
    functions = [
        func(
            JOB_FUNCTIONS[op],  # type: ignore[arg-type]
            name=op.value,
            timeout=settings.timeout_for(op),
            max_tries=settings.max_tries,
            keep_result=settings.result_ttl,
        )
        for op in Operation
    ]
    webhook = func(
        deliver_webhook,  # type: ignore[arg-type]
        name=DELIVER_FUNCTION,
        timeout=60,
        max_tries=settings.webhook_max_tries,
        keep_result=settings.result_ttl,
    )
    health_cron = cron(
        check_services,  # type: ignore[arg-type]
        name="cron:check_services",  # the "cron:" prefix keeps its runs out of job lists and depths
        run_at_startup=True,
        timeout=30,
        keep_result=0,
        **_cron_slots(settings.health_check_period),
    )
    workflow_sweep = cron(
        sweep_workflows,  # type: ignore[arg-type]
        name="cron:sweep_workflows",
        second={7, 37},
        timeout=60,
        keep_result=0,
    )
    schedule_check = cron(
        fire_schedules,  # type: ignore[arg-type]
        name="cron:fire_schedules",
        # Every 5 s: a 6-field cron expression may ask for slots that fine; a minute slot fires on time.
        second=set(range(0, 60, 5)),
        timeout=60,
        keep_result=0,
    )
    return type(
        "WorkerSettings",
        (),
        {
            "functions": [*functions, webhook],
            "cron_jobs": [health_cron, workflow_sweep, schedule_check],
            "on_startup": startup,
            "after_job_end": after_job_end,
            "on_shutdown": shutdown,
            "queue_name": settings.queue_name,
            "max_jobs": settings.max_jobs,
            "keep_result": settings.result_ttl,
            "max_tries": settings.max_tries,
            # Aborts come over pubsub (jobs/aborts.py): arq's check would cost every idle poll 2 commands.
            "allow_abort_jobs": False,
            # Read no more due jobs than can start: workers sharing a queue then contend for fewer.
            "queue_read_limit": settings.max_jobs,
            "job_serializer": serialize,
            "job_deserializer": deserialize,
            "poll_delay": settings.poll_delay,
            "handle_signals": True,
            "job_completion_wait": settings.shutdown_wait,
            # The reaper, not this TTL, hands back a dead worker's jobs; it stays as arq's last resort.
            "redis_settings": _redis_settings(settings),
        },
    )
