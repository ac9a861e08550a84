"""Retention (issue 18): versions of uploads and outputs older than the settings allow are removed.

Every hour one worker (arq runs a cron once per slot across the fleet) walks every stored version:
one under ``uploads/`` older than ``IFCFLOW_RETENTION_UPLOADS_DAYS``, or under ``output/`` older than
``IFCFLOW_RETENTION_OUTPUTS_DAYS``, is removed (0 keeps them for good), the latest too (the name then
goes), except what a job still in a queue (queued, deferred, retrying, running) will read: the versions
its request pins (``input_version_ids``), and for a job recorded without pins the latest of each of its
inputs. A project's files (``projects/<p>/uploads/...``, ``projects/<p>/output/...``) age by the same
rules as the default project's; pins are full store keys, as every job's record holds them. Files put
in by hand are taken in as versions first (``Storage.files``), so they age like
uploads. Versions are listed before the pending jobs are read, so a job submitted during the listing
is seen; one submitted in the moment between that read and the removals, pinning a version that old,
fails with "version not found" (422) rather than reading other bytes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import structlog
from arq import ArqRedis
from pydantic import ValidationError

from access.scope import RESERVED, prefix_of, project_of_key
from contracts.operations import Operation
from contracts.paths import PathRole, path_fields
from contracts.requests import REQUEST_MODELS
from jobs.context import WorkerContext
from settings import DEFAULT_QUEUE, Settings
from storage import Storage, StorageError, Version
from store import job_store

log = structlog.get_logger("jobs.retention")

RETENTION_MINUTE = 23  # past every hour: away from the other crons' minutes
LATEST = ""  # in a kept pair: the latest version of the key, whatever it is


@dataclass
class RetentionSweep:
    """What one sweep did (logged as one line)."""

    versions: int = 0  # examined
    expired: int = 0  # older than their prefix allows
    kept_pinned: int = 0  # expired but needed by a pending job
    removed: int = 0
    removed_bytes: int = 0
    failed: int = 0  # the store refused the removal: tried again next sweep
    pending_jobs: int = 0
    seconds: float = 0.0


def queues_of(settings: Settings) -> list[str]:
    """Every queue a job can wait in, as the settings route them."""
    return list(dict.fromkeys([DEFAULT_QUEUE, settings.queue_name, *(settings.queue_for(op) for op in Operation)]))


def needed(pending: list[tuple[str, dict[str, object]]]) -> set[tuple[str, str]]:
    """``(key, version)`` pairs pending jobs will read; ``(key, LATEST)`` for an input without a pin."""
    kept: set[tuple[str, str]] = set()
    for operation, request in pending:
        pins = request.get("input_version_ids")
        pinned = {str(k): str(v) for k, v in pins.items()} if isinstance(pins, dict) else {}
        kept.update(pinned.items())
        try:
            model = REQUEST_MODELS[Operation(operation)].model_validate(request)
        except (ValueError, ValidationError):
            continue  # a record this code cannot read: its pins (above) are all it can name
        for _loc, role, owner, name in path_fields(model):
            key = getattr(owner, name)
            if role is PathRole.input and key not in pinned:
                kept.add((key, LATEST))
    return kept


def _max_age(settings: Settings, store_key: str) -> timedelta | None:
    key = store_key[len(prefix_of(project_of_key(store_key))):]  # as its project names it
    if key.startswith("uploads/"):
        days = settings.retention_uploads_days
    elif key.startswith("output/"):
        days = settings.retention_outputs_days
    else:
        return None
    return timedelta(days=days) if days > 0 else None


async def sweep_versions(
    storage: Storage, redis: ArqRedis, settings: Settings, now: datetime | None = None
) -> RetentionSweep:
    """Remove the expired versions no pending job needs (see the module docstring); what was done."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    sweep = RetentionSweep()
    if settings.retention_uploads_days <= 0 and settings.retention_outputs_days <= 0:
        return sweep
    for prefix in ("uploads/", "output/", RESERVED):
        async for _ in storage.files(prefix):
            pass  # taking files put in by hand in as versions, so they expire too
    expired: list[Version] = []
    async for version in storage.all_versions():
        sweep.versions += 1
        age = _max_age(settings, version.key)
        if age is not None and version.modified < now - age:
            expired.append(version)
    if expired:
        pending = await job_store.pending_requests(redis, queues_of(settings))
        sweep.pending_jobs = len(pending)
        kept = needed(pending)
        for version in expired:
            sweep.expired += 1
            if (version.key, version.version) in kept or (version.latest and (version.key, LATEST) in kept):
                sweep.kept_pinned += 1
                continue
            try:
                await storage.remove(version.key, version.version)
            except StorageError as exc:
                sweep.failed += 1
                log.warning("retention.remove_failed", key=version.key, version=version.version, error=str(exc))
                continue
            sweep.removed += 1
            sweep.removed_bytes += version.size
    sweep.seconds = round(time.perf_counter() - started, 3)
    return sweep


async def retention_sweep(ctx: WorkerContext) -> int:
    """arq cron job: one sweep over the worker's store, logged as one line; how many versions went."""
    settings = ctx["settings"]
    sweep = await sweep_versions(ctx["storage"], ctx["redis"], settings)
    log.info("retention.swept", uploads_days=settings.retention_uploads_days,
             outputs_days=settings.retention_outputs_days, **asdict(sweep))
    return sweep.removed
