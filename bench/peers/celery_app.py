"""The Celery baseline's app and its one task: ``celery -A bench.peers.celery_app worker``.

Broker and result backend are the bench's private Redis (``BENCH_REDIS_URL``). The task posts the same
JSON body to the same stand-in service URL as ifcflow's ``ifcconvert`` job, with ``requests`` (Celery
tasks are synchronous) on a keep-alive session per thread, so that neither pool pays a TCP connect
per job that ifcflow's pooled aiohttp session does not.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import requests
from celery import Celery
from celery.signals import worker_ready
from redis import Redis

QUEUE = "bench-celery"  # the default; the bench gives each pool's workers a queue of their own (-Q)
TASK = "bench.call_service"
READY_KEY = "bench:celery:ready"  # a set of worker host names, added to once each worker consumes

_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # no default Redis: port 1 refuses



def make_app(redis_url: str, *, results: bool = True) -> Celery:
    """The worker's app stores results (how the bench sees a job end); the bench's own sending app has
    no result backend, so that it does not subscribe to every task's result channel as it sends."""
    celery = Celery("bench", broker=redis_url, backend=redis_url if results else None)
    celery.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # Pooled broker connections for the bench's concurrent senders (None would mean no pool at all:
        # a new connection per message sent).
        broker_pool_limit=64,
    )
    return celery


app = make_app(_REDIS_URL)

_local = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


@app.task(name=TASK)  # type: ignore[untyped-decorator]
def call_service(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = _session().post(url, json=body, timeout=60)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


@worker_ready.connect  # type: ignore[untyped-decorator]
def _announce(sender: Any = None, **_: Any) -> None:
    """Tell the bench this worker consumes now (it starts timing only once every worker does)."""
    with Redis.from_url(_REDIS_URL) as redis:
        redis.sadd(READY_KEY, str(getattr(sender, "hostname", os.getpid())))
