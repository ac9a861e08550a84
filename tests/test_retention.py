"""Retention (issue 18 item 5), on both backends: the sweep removes versions older than the settings
allow, keeps the ones a queued or deferred job will read (pinned, or the latest for a job without pins)
and the recent ones; files put in by hand age like uploads. The sweep is called directly with a ``now``."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from arq import ArqRedis

from contracts.operations import Operation
from jobs.retention import sweep_versions
from settings import Settings
from storage import Storage, Version, open_storage
from storage.local import LocalStorage
from store import job_store
from store.job_store import NewJob

DAY = timedelta(days=1)


async def _chunks(data: bytes) -> AsyncIterable[bytes]:
    yield data


async def _put(storage: Storage, key: str, data: bytes) -> Version:
    return await storage.receive(key, _chunks(data), len(data) + 1)


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "local":
        store: Storage = LocalStorage(tmp_path / "data")
    else:
        endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        store = open_storage(Settings(storage_url=f"s3://{bucket}/p", s3_endpoint_url=endpoint))
    await store.start()
    yield store
    await store.close()


def _settings(redis_url: str, uploads_days: float = 1, outputs_days: float = 0) -> Settings:
    return Settings(redis_url=redis_url, retention_uploads_days=uploads_days, retention_outputs_days=outputs_days)


async def _kept(storage: Storage) -> set[tuple[str, str]]:
    return {(v.key, v.version) async for v in storage.all_versions()}


def _after_this_second(moment: datetime) -> datetime:
    """The next whole second after ``moment``, once the clock has passed it: versions written from now
    on are newer than it on every store (S3 counts in seconds)."""
    boundary = moment.replace(microsecond=0) + timedelta(seconds=1)
    while time.time() <= boundary.timestamp():
        time.sleep(0.01)  # waiting for the clock itself, not for something else to happen
    return boundary


async def test_old_versions_go_pinned_and_recent_ones_stay(storage: Storage, aredis: ArqRedis, redis_url: str):
    settings = _settings(redis_url)
    a1 = await _put(storage, "uploads/a.ifc", b"a one")
    a2 = await _put(storage, "uploads/a.ifc", b"a two")
    b1 = await _put(storage, "uploads/b.ifc", b"b one")
    c1 = await _put(storage, "uploads/c.ifc", b"c one")
    o1 = await _put(storage, "output/ifcconvert/o.glb", b"an old output")
    cutoff = _after_this_second(max(v.modified for v in (a1, a2, b1, c1, o1)))
    a3 = await _put(storage, "uploads/a.ifc", b"a three")
    # A queued job pinned to the oldest a, and a deferred one recorded without pins (an old job) on c.
    queued = {"filename": "uploads/a.ifc", "output_filename": "output/ifc2json/a.json",
              "input_version_ids": {"uploads/a.ifc": a1.version}}
    await job_store.create(aredis, settings, NewJob(Operation.ifc2json, queued, job_store.new_job_id()))
    deferred = {"filename": "uploads/c.ifc", "output_filename": "output/ifc2json/c.json"}
    due = job_store.now_ms() + 3_600_000
    await job_store.create(aredis, settings, NewJob(Operation.ifc2json, deferred, job_store.new_job_id(), due_ms=due))

    sweep = await sweep_versions(storage, aredis, settings, now=cutoff + DAY)

    assert await _kept(storage) == {
        ("uploads/a.ifc", a1.version),  # pinned by the queued job
        ("uploads/a.ifc", a3.version),  # recent
        ("uploads/c.ifc", c1.version),  # the latest, which the deferred job reads
        ("output/ifcconvert/o.glb", o1.version),  # outputs are kept for good (0 days)
    }
    assert (sweep.removed, sweep.kept_pinned, sweep.pending_jobs) == (2, 2, 2)
    assert sweep.removed_bytes == len(b"a two") + len(b"b one")
    assert await storage.stat("uploads/b.ifc") is None  # its only version went: the name too
    assert (await storage.stat("uploads/a.ifc")).version == a3.version


async def test_outputs_expire_on_their_own_setting_and_a_sweep_of_nothing_old_removes_nothing(
    storage: Storage, aredis: ArqRedis, redis_url: str
):
    upload = await _put(storage, "uploads/m.ifc", b"a model")
    output = await _put(storage, "output/ifc2json/m.json", b"{}")
    cutoff = _after_this_second(max(upload.modified, output.modified))
    settings = _settings(redis_url, uploads_days=3, outputs_days=1)
    assert (await sweep_versions(storage, aredis, settings, now=cutoff)).removed == 0
    sweep = await sweep_versions(storage, aredis, settings, now=cutoff + DAY)
    assert sweep.removed == 1 and await _kept(storage) == {("uploads/m.ifc", upload.version)}
    assert (await sweep_versions(storage, aredis, _settings(redis_url, 0, 0), now=cutoff + 30 * DAY)).removed == 0


async def test_a_file_put_in_by_hand_is_taken_in_and_ages_like_an_upload(aredis: ArqRedis, redis_url: str,
                                                                          tmp_path: Path):
    storage = LocalStorage(tmp_path / "data")
    await storage.start()
    by_hand = tmp_path / "data" / "uploads" / "copied.ifc"
    by_hand.parent.mkdir(parents=True)
    by_hand.write_bytes(b"copied in with its old time")
    old = time.time() - 10 * 86400
    os.utime(by_hand, (old, old))
    fresh = await _put(storage, "uploads/fresh.ifc", b"just uploaded")
    sweep = await sweep_versions(storage, aredis, _settings(redis_url, uploads_days=7), now=fresh.modified + DAY)
    assert sweep.removed == 1 and not by_hand.exists()
    assert await _kept(storage) == {("uploads/fresh.ifc", fresh.version)}
