"""Temporaries nobody will finish: staging folders and partial uploads older than any job can run.

An IFC service removes the staging folder of a child it killed (ifcservices/staging.py), and the gateway
removes a refused upload's temporary file; what outlives its process (a service or a gateway killed
mid-write, a machine that lost power) is left in the data directory for good. Every worker sweeps at
start and then every ``SWEEP_MINUTES``: a ``.staging-*`` folder or ``.upload-*`` file untouched for
longer than the longest job timeout belongs to no running job (a job ends by its timeout at the
latest, and an upload in progress touches its file with every chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from jobs.context import WorkerContext
from settings import Settings

log = structlog.get_logger("jobs.sweeper")

STAGING_PREFIX = ".staging-"  # ifcservices.staging.STAGING_PREFIX (workers do not import the services)
UPLOAD_PREFIX = ".upload-"  # service/uploads.py
SWEEP_MINUTES = 10


@dataclass
class Swept:
    staging: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)


def longest_job_timeout(settings: Settings) -> int:
    """Seconds the longest job may run: nothing of a running job can be older than this."""
    return max([settings.job_timeout, *settings.job_timeouts.values()])


def _last_touched(folder: Path) -> float:
    """The newest mtime of a folder and the files in it (a tool writing a file touches the file only)."""
    newest = folder.lstat().st_mtime
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def sweep(data_dir: Path, max_age: float, now: float | None = None) -> Swept:
    """Remove stale staging folders and partial uploads under ``data_dir``; what was removed."""
    cutoff = (time.time() if now is None else now) - max_age
    swept = Swept()
    for root, dirs, files in os.walk(data_dir):  # does not follow symlinks: nothing outside is touched
        here = Path(root)
        for name in [d for d in dirs if d.startswith(STAGING_PREFIX)]:
            dirs.remove(name)  # never walked into: it is removed whole or left whole
            folder = here / name
            with contextlib.suppress(OSError):
                if not folder.is_symlink() and _last_touched(folder) < cutoff:
                    shutil.rmtree(folder)
                    swept.staging.append(str(folder.relative_to(data_dir)))
        for name in files:
            if not name.startswith(UPLOAD_PREFIX):
                continue
            path = here / name
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
                    swept.uploads.append(str(path.relative_to(data_dir)))
    return swept


async def sweep_leftovers(ctx: WorkerContext) -> int:
    """arq cron job: sweep the data directory off the event loop; how many temporaries were removed."""
    settings = ctx["settings"]
    if not settings.data_dir.is_dir():
        return 0  # a worker without the shared data directory has nothing to sweep
    swept = await asyncio.to_thread(sweep, settings.data_dir, longest_job_timeout(settings))
    if swept.staging or swept.uploads:
        log.info("leftovers.removed", staging=swept.staging[:50], uploads=swept.uploads[:50],
                 count=len(swept.staging) + len(swept.uploads))
    return len(swept.staging) + len(swept.uploads)
