"""The S3 backend's job folders: a job's inputs linked into a folder of its own, its outputs published.

The child runs with ``<scratch>/jobs/<uuid>/`` as its data directory, each input hard-linked there
under its key (``uploads/a.ifc``) from the input cache (``ifcservices.stored_inputs``), so every tool
works as on the local backend. Its outputs are written there the same way too (whole, by rename); only
when the job has succeeded is each file of its ``output_files`` uploaded with ``Storage.publish``: an
output appears in the store whole, or not at all. The folder is removed however the job ends; one left
by a killed service is removed when a service next starts on the same scratch folder, once it is older
than any job may run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from contracts.paths import check_relative_path
from ifcservices.stored_inputs import InputCache
from storage.base import Storage, Version

log = structlog.get_logger("ifcservices.jobs")

JOBS = "jobs"


@asynccontextmanager
async def job_folder(scratch: Path, cache: InputCache, inputs: Mapping[str, str]) -> AsyncIterator[Path]:
    """A fresh folder holding each input ``key`` (its version ``inputs[key]``); removed on exit."""
    folder = scratch / JOBS / uuid.uuid4().hex
    await asyncio.to_thread(folder.mkdir, parents=True)
    try:
        for key, version in inputs.items():
            await cache.link(key, version, folder / key)
        yield folder
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        await cache.trim()  # the job's links are gone: what it held may go now


def output_keys(raw_result: bytes) -> list[str]:
    """The ``output_files`` of a child's result, each a checked relative key."""
    files = json.loads(raw_result).get("output_files") or []
    return [check_relative_path(str(name)) for name in files]


async def publish_outputs(storage: Storage, folder: Path, keys: list[str]) -> list[Version]:
    """Upload each output the job committed in ``folder`` as a new version of its key, in order
    (companions such as an OBJ's MTL come before their main file)."""
    published = []
    root = os.path.realpath(folder)
    for key in keys:
        path = Path(os.path.realpath(folder / key))
        if not str(path).startswith(root + os.sep) or not path.is_file():
            # The child named a file it did not leave in its folder: a bug, never a path outside.
            raise FileNotFoundError(f"output {key} is not in the job's folder")
        published.append(await storage.publish(key, path))
    return published


def sweep_job_folders(scratch: Path, max_age: float) -> list[str]:
    """Remove job folders untouched for ``max_age`` seconds (their service was killed); their names."""
    cutoff = time.time() - max_age
    removed = []
    with contextlib.suppress(FileNotFoundError), os.scandir(scratch / JOBS) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    shutil.rmtree(entry.path)
                    removed.append(entry.name)
    return removed
