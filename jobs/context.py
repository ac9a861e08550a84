"""The worker's ``ctx``: what arq puts in it, and the clients ``on_startup`` adds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypedDict

import aiohttp
from arq import ArqRedis

from settings import Settings
from storage import Storage
from store.job_store import JobStart, TryEnd


class WorkerCounters(TypedDict):
    running: int
    complete: int
    failed: int
    retried: int


class WorkerContext(TypedDict, total=False):
    # arq's own keys
    redis: ArqRedis
    job_id: str
    job_try: int
    enqueue_time: datetime
    score: int
    # ours, made in on_startup and closed in on_shutdown
    settings: Settings
    http: aiohttp.ClientSession
    # the store of uploads and outputs (result cache, retention)
    storage: Storage
    worker_id: str
    started_at: float
    counters: WorkerCounters
    heartbeat: asyncio.Task[None]
    # since when this worker's heartbeats have reached Redis on time (unset while they do not)
    connected_since: float
    # the operations running now, by job id, and those asked to abort (jobs/aborts.py)
    abortable: dict[str, asyncio.Task[Any]]
    aborted: set[str]
    # the pubsub listener of aborts and wake-ups (jobs/channels.py)
    listener: asyncio.Task[None]
    # set by ``python -m jobs``'s worker before on_startup: a submit to its queue claims at once
    wake: Callable[[], None]
    # per try (jobs/hooks.py): what its start read, when it started, and how the job function ended it
    job: JobStart
    try_started: float
    try_end: TryEnd
