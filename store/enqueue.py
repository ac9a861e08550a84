"""Transitional: ``store.job_store`` creates jobs now."""

from __future__ import annotations

from typing import Any

from settings import Settings
from store.job_store import IdempotencyConflict, NewJob, Priority, create, new_job_id, now_ms

__all__ = ["IdempotencyConflict", "NewJob", "Priority", "create_job", "new_job_id", "now_ms"]


async def create_job(redis: Any, settings: Settings, job: NewJob) -> bool:
    return await create(redis, settings, job)
