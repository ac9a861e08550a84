"""What ``WorkerSettings`` is made of: the functions, cron jobs and Redis settings, from one ``Settings``."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.worker import Function
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.operations import Operation
from contracts.webhooks import DELIVER_FUNCTION
from jobs.cron import fire_schedules, sweep_workflows
from jobs.health import check_services
from jobs.operations import job_function
from jobs.retention import RETENTION_MINUTE, retention_sweep
from jobs.sweeper import SWEEP_MINUTES, sweep_leftovers
from jobs.webhooks import deliver_webhook
from settings import Settings
from store.redis_client import arq_redis_settings


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


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings: ride out a Redis restart (each command retries with backoff for
    about a minute, silently) instead of crashing on the first refused connection."""
    arq_settings = arq_redis_settings(settings)
    arq_settings.retry_on_error = [ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError]
    arq_settings.retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=40)
    arq_settings.conn_retries = 30
    arq_settings.conn_retry_delay = 1
    return arq_settings


# arq counts every run of a job, waits for a busy service included; the job function counts the real
# tries against IFCFLOW_MAX_TRIES (jobs/operations.py), so arq's own cap only guards against a loop.
_ARQ_MAX_TRIES = 10_000


def functions(settings: Settings) -> list[Function]:
    """One arq function per operation (each its own timeout), and the webhook delivery."""
    made = [
        func(job_function(op), name=op.value, timeout=settings.timeout_for(op), max_tries=_ARQ_MAX_TRIES,
             keep_result=settings.result_ttl)
        for op in Operation
    ]
    made.append(func(deliver_webhook, name=DELIVER_FUNCTION, timeout=60,  # type: ignore[arg-type]
                     max_tries=settings.webhook_max_tries, keep_result=settings.result_ttl))
    return made


def cron_jobs(settings: Settings) -> list[CronJob]:
    """Service health checks, the workflow sweep, the schedules, the leftovers and retention sweeps;
    named ``cron:*`` so that their runs stay out of job lists, queue depths and the live job stream."""
    return [
        cron(check_services, name="cron:check_services", run_at_startup=True, timeout=30,  # type: ignore[arg-type]
             keep_result=0, **_cron_slots(settings.health_check_period)),
        cron(sweep_workflows, name="cron:sweep_workflows", second={7, 37}, timeout=60,  # type: ignore[arg-type]
             keep_result=0),
        # Every 5 s: a 6-field cron expression may ask for slots that fine; a minute slot fires on time.
        cron(fire_schedules, name="cron:fire_schedules", second=set(range(0, 60, 5)),  # type: ignore[arg-type]
             timeout=60, keep_result=0),
        # Temporaries left by killed services and gateways (jobs/sweeper.py): at start, then every 10 minutes.
        cron(sweep_leftovers, name="cron:sweep_leftovers", run_at_startup=True,  # type: ignore[arg-type]
             minute=set(range(3, 60, SWEEP_MINUTES)), second=41, timeout=300, keep_result=0),
        # Versions past IFCFLOW_RETENTION_*_DAYS (jobs/retention.py): hourly, once across the fleet.
        cron(retention_sweep, name="cron:retention", minute=RETENTION_MINUTE, second=11,  # type: ignore[arg-type]
             timeout=3600, keep_result=0),
    ]
