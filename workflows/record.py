"""A workflow's two Redis keys and the one way they change: an optimistic transaction.

``ifcflow:workflow:<id>`` holds the spec (``steps``), ``status``, times, options, the message of a
step found invalid (``error:<step>``) and, once a step's job has ended, that step's outcome copied
from the job (``outcome:<step>``: status, result, error), so the workflow never needs a job record
after the job ended. ``...:steps`` maps each step to its state.

Every change is WATCH, read, decide, MULTI, write, EXEC, again when another writer came first. A
step's job is created inside the same MULTI that marks the step ``enqueued``: a step is enqueued
exactly when its job exists, and a cancel (which writes the same keys) is ordered before or after
each start, never between its parts.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import WatchError

from settings import Settings
from store import job_store, keys
from store.job_store import NewJob, now_ms
from workflows.model import Step

log = structlog.get_logger("workflows")

# Step states kept in the ``:steps`` hash. A step with a job is ``enqueued`` until its job ended,
# then takes the job's final status (complete, failed, aborted), or ``lost`` when the job's record
# was gone before its outcome was copied.
PENDING, ENQUEUED, SKIPPED, CANCELLED, FAILED = "pending", "enqueued", "skipped", "cancelled", "failed"
RUNNING, COMPLETE, ABORTED, LOST = "running", "complete", "aborted", "lost"
FAILING = frozenset({FAILED, ABORTED, CANCELLED, LOST})
OUTCOME = "outcome:"
INVALID = "error:"
# Writers of one workflow (a step's hook, the sweep, a cancel) rarely collide; 20 tries with a
# growing random pause outlast any realistic burst, and the sweep retries whatever still lost.
_TRIES = 20


@dataclass(frozen=True)
class Loaded:
    """A workflow as read: its record's fields, its steps, their states and copied outcomes."""

    record: dict[str, str]
    steps: list[Step]
    states: dict[str, str]

    @property
    def status(self) -> str:
        return self.record["status"]

    def outcome(self, step_id: str) -> dict[str, Any] | None:
        raw = self.record.get(OUTCOME + step_id)
        return json.loads(raw) if raw else None

    def state(self, step_id: str) -> str:
        return self.states.get(step_id, PENDING)


@dataclass
class Change:
    """What one transaction writes: step states, record fields, step jobs to create, the end."""

    states: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    jobs: list[NewJob] = field(default_factory=list)
    finish: tuple[str, str] | None = None  # (status, error)

    def __bool__(self) -> bool:
        return bool(self.states or self.fields or self.jobs or self.finish)


def step_job_id(workflow_id: str, step_id: str) -> str:
    return f"wf-{workflow_id}-{step_id}"


def parse(raw: dict[bytes, bytes], raw_states: dict[bytes, bytes]) -> Loaded | None:
    if not raw:
        return None
    record = {k.decode(): v.decode() for k, v in raw.items()}
    steps = [Step.model_validate(s) for s in json.loads(record["steps"])]
    return Loaded(record, steps, {k.decode(): v.decode() for k, v in raw_states.items()})


async def read(redis: Redis, workflow_id: str) -> Loaded | None:
    """The workflow as it is now (one round trip, no transaction), or None when it is gone."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.workflow(workflow_id))
        pipe.hgetall(keys.workflow_steps(workflow_id))
        raw, raw_states = await pipe.execute()
    return parse(raw, raw_states)


Decide = Callable[[Loaded], Awaitable[Change]]


async def transact(
    redis: Redis, settings: Settings, workflow_id: str, decide: Decide
) -> tuple[Loaded, Change] | None:
    """Read the workflow, ``decide`` what to change, write it if nobody wrote first (else again).

    Returns what was read and what was written (an empty ``Change``: nothing to do), None when the
    workflow is gone, or raises ``Contended`` when other writers won every try."""
    wf_key, steps_key = keys.workflow(workflow_id), keys.workflow_steps(workflow_id)
    for attempt in range(_TRIES):
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.watch(wf_key, steps_key)
            raw = await pipe.hgetall(wf_key)
            raw_states = await pipe.hgetall(steps_key)
            loaded = parse(raw, raw_states)
            if loaded is None:
                await pipe.reset()
                await redis.srem(keys.ACTIVE_WORKFLOWS, workflow_id)
                return None
            change = await decide(loaded)
            if not change:
                return loaded, change
            pipe.multi()
            _write(pipe, settings, workflow_id, loaded, change)
            try:
                await pipe.execute()
            except WatchError:
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            return loaded, change
    raise Contended(workflow_id)


class Contended(RuntimeError):
    """Other writers changed the workflow during every try; the periodic sweep will try again."""


def _write(pipe: Any, settings: Settings, workflow_id: str, loaded: Loaded, change: Change) -> None:
    wf_key, steps_key = keys.workflow(workflow_id), keys.workflow_steps(workflow_id)
    for job in change.jobs:
        job_store.queue_create(pipe, settings, job)  # inside this transaction, with the step's state
    if change.states:
        pipe.hset(steps_key, mapping=change.states)
    fields = dict(change.fields)
    if change.finish is not None:
        fields.update(status=change.finish[0], error=change.finish[1], finished_at=str(now_ms()))
    if fields:
        pipe.hset(wf_key, mapping=fields)
    if change.finish is None and loaded.status == RUNNING:
        return
    # Ended (now or before): kept for the result TTL from its last change, like a job's record.
    pipe.expire(wf_key, settings.result_ttl)
    pipe.expire(steps_key, settings.result_ttl)
    states = {**loaded.states, **change.states}
    if ENQUEUED not in states.values():
        pipe.srem(keys.ACTIVE_WORKFLOWS, workflow_id)  # nothing left for the sweep to copy
