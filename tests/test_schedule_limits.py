"""Schedules and deferral within bounds: skipped slots are recorded, schedules are capped, the check
reads only due ones, and a job cannot be parked for more than a year.

The workers' check (``fire_due``) is called in-process here, the way the cron job calls it, so the
test decides when it runs; the shared worker is not running (no test here asks for ``worker``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from settings import Settings
from store import keys
from tests.conftest import CONVERT
from workflows import schedule_store, schedules
from workflows.schedules import ScheduleRequest

EVERY_MINUTE = {"name": "every minute", "cron": "* * * * *", "job": {"operation": "ifcconvert", "arguments": CONVERT}}
NIGHTLY = {**EVERY_MINUTE, "name": "nightly", "cron": "0 2 * * *"}


@pytest.fixture
def settings(redis_url: str, data_dir: Path) -> Settings:
    return Settings(redis_url=redis_url, data_dir=data_dir, max_schedules=30_000)


def minute_slots_between(after_ms: int, before_ms: int) -> int:
    """Whole minutes strictly after ``after_ms`` and strictly before ``before_ms``."""
    first = (after_ms // 60_000 + 1) * 60_000
    return len(range(first, before_ms, 60_000))


async def test_slots_missed_while_no_worker_ran_are_recorded_as_skipped(client, aredis, settings, storage):
    made = await schedules.create(aredis, settings, ScheduleRequest.model_validate(EVERY_MINUTE))
    assert made["last_skipped"] is None
    # Made ten and a half minutes ago, and no worker has checked since.
    long_ago = int(time.time() * 1000) - 630_000

    def backdated(schedule: dict) -> None:
        schedule["created_at"] = long_ago

    await schedules.update(aredis, made["id"], backdated)
    assert await schedules.fire_due(aredis, settings, storage) == 1
    fired = await schedules.get(aredis, made["id"])
    assert fired is not None
    latest = fired["last_slot"]
    assert latest == int(time.time() * 1000) // 60_000 * 60_000  # only the latest slot ran ...
    assert await aredis.exists(keys.job_meta(f"sched-{made['id']}-{latest}"))
    skipped = minute_slots_between(long_ago, latest)
    assert skipped >= 9
    assert fired["last_skipped"]["slots"] == skipped  # ... the others are on record
    assert fired["last_skipped"]["before_slot"] == latest
    shown = (await client.get(f"/schedules/{made['id']}")).json()
    assert shown["last_skipped"] == fired["last_skipped"]
    metrics = (await client.get("/metrics")).text
    assert re.search(rf"^ifcflow_schedule_slots_skipped_total {skipped}\.0$", metrics, re.M), metrics[-2000:]
    assert await schedules.fire_due(aredis, settings, storage) == 0  # the slot is not fired twice


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    env["IFCFLOW_MAX_SCHEDULES"] = "3"  # of the in-process gateway (``client``): no process of its own
    return env


async def test_schedules_past_the_cap_get_409_naming_the_setting(client):
    answers = await asyncio.gather(*(client.post("/schedules", json=NIGHTLY) for _ in range(8)))
    assert sorted(r.status_code for r in answers) == [201] * 3 + [409] * 5  # the count and the write are one step
    refused = next(r for r in answers if r.status_code == 409)
    assert "IFCFLOW_MAX_SCHEDULES" in refused.json()["detail"] and "3" in refused.json()["detail"]
    assert len((await client.get("/schedules")).json()) == 3
    first = next(r for r in answers if r.status_code == 201).json()
    assert (await client.delete(f"/schedules/{first['id']}")).status_code == 204
    assert (await client.post("/schedules", json=NIGHTLY)).status_code == 201


async def test_the_check_reads_only_the_schedules_that_are_due(aredis, settings, storage):
    body = ScheduleRequest.model_validate(NIGHTLY)
    for _ in range(50):
        await asyncio.gather(*(schedules.create(aredis, settings, body) for _ in range(100)))
    await schedules.fire_due(aredis, settings, storage)  # builds nothing: the index was written with each create
    started = time.process_time()
    for _ in range(10):
        assert await schedules.fire_due(aredis, settings, storage) == 0
    per_check = (time.process_time() - started) / 10
    # Reading and parsing 5,000 schedules took 0.3 s a check before the index (20,000: 26 % of a core).
    assert per_check < 0.01, f"{per_check * 1000:.1f} ms of CPU per check with 5,000 schedules, none due"
    assert await aredis.zcard(schedule_store.DUE) == 5_000


async def test_a_schedule_stored_before_the_index_existed_still_fires(aredis, settings, storage):
    two_minutes_ago = int(time.time() * 1000) - 120_000
    stored = {"id": "a" * 32, **ScheduleRequest.model_validate(EVERY_MINUTE).model_dump(mode="json"),
              "created_at": two_minutes_ago, "last_slot": 0, "last_fired": None, "last_error": None}
    await aredis.hset(keys.SCHEDULES, stored["id"], json.dumps(stored))  # no index entry, no marker
    assert await schedules.fire_due(aredis, settings, storage) == 1
    fired = await schedules.get(aredis, stored["id"])
    assert fired is not None and fired["last_fired"] is not None
    assert await aredis.zscore(schedule_store.DUE, stored["id"]) > time.time() * 1000  # indexed at its next slot


async def test_defer_until_more_than_a_year_ahead_is_refused_like_defer_by(client):
    too_far = (datetime.now(UTC) + timedelta(days=366)).isoformat()
    r = await client.post("/ifcconvert", json={**CONVERT, "defer_until": too_far})
    assert r.status_code == 422 and "defer_until" in r.text and "365 days" in r.text
    r = await client.post("/ifcconvert", json={**CONVERT, "defer_until": "9999-12-31T00:00:00Z"})
    assert r.status_code == 422 and "defer_until" in r.text
    within = (datetime.now(UTC) + timedelta(days=364)).isoformat()
    r = await client.post("/ifcconvert", json={**CONVERT, "defer_until": within})
    assert r.status_code == 202 and r.json()["status"] == "deferred", r.text
