"""The S3 backend's input cache: each input version fetched once into a local folder, named by its sha256.

A job's inputs are hard-linked from here into its own folder (``ifcservices.stored_job``), so five jobs
on one model cost one GET and one copy on disk. The folder is bounded by ``IFCFLOW_INPUT_CACHE_BYTES``:
past it the least recently used files go, never one in use. A file is in use while a job folder links
it (its link count is above one: that holds across service processes sharing the folder) or while this
process is fetching or linking it. Concurrent jobs needing the same version wait on one fetch (a lock
per file); a version is immutable, so a cached file is never stale, and its sha256 is checked once,
when it is fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from contracts.paths import suffix_of
from storage.base import Storage, StorageError, is_version_id, sha256_of

log = structlog.get_logger("ifcservices.inputs")

_PARTIAL = ".fetch-"  # a download in progress; never counted, never served


@dataclass
class CacheStats:
    """What the cache did since the service started (``/health`` reports it)."""

    fetches: int = 0  # GETs from the store
    fetched_bytes: int = 0
    hits: int = 0  # inputs served from the folder without a GET
    evicted: int = 0
    bytes: int = 0  # held now (after the last trim)
    files: int = 0


class InputCache:
    """Input versions of one store, kept in ``directory`` up to ``max_bytes`` (see the module docstring)."""

    def __init__(self, storage: Storage, directory: Path, max_bytes: int) -> None:
        self.storage = storage
        self.directory = directory
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._busy: dict[str, int] = {}  # file name -> fetches or links under way in this process

    def path(self, key: str, sha256: str) -> Path:
        """Where the bytes of version ``sha256`` of ``key`` are cached (the suffix kept for the readers)."""
        if not is_version_id(sha256):
            raise ValueError(f"not a version id: {sha256!r}")
        return self.directory / f"{sha256}{suffix_of(key)}"

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users <= 1:
                del self._locks[name]  # nobody else waits: the table stays as small as the jobs running
            else:
                self._locks[name] = (lock, users - 1)

    async def link(self, key: str, sha256: str, dest: Path) -> None:
        """Put version ``sha256`` of ``key`` at ``dest`` (a hard link into the cache, fetched first
        when it is not cached yet). ``NotFound``/``StorageError``/``StoreFull`` from the store."""
        cached = self.path(key, sha256)
        name = cached.name
        self._busy[name] = self._busy.get(name, 0) + 1
        try:
            async with self._locked(name):
                for _ in range(2):  # evicted by another process between our look and our link: once more
                    if not await asyncio.to_thread(cached.is_file):
                        await self._fetch(key, sha256, cached)
                    else:
                        self.stats.hits += 1
                    try:
                        await asyncio.to_thread(_link_or_copy, cached, dest)
                        break
                    except FileNotFoundError:
                        continue
                else:
                    raise StorageError(f"{key} version {sha256}: evicted from the input cache while linked")
        finally:
            if self._busy[name] <= 1:
                del self._busy[name]
            else:
                self._busy[name] -= 1
        await self.trim()

    async def _fetch(self, key: str, sha256: str, cached: Path) -> None:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        partial = self.directory / f"{_PARTIAL}{secrets.token_hex(8)}{cached.suffix}"
        try:
            found = await self.storage.download(key, partial, sha256)
            # Content-addressed: bytes other than the name says would be served to every later job.
            actual = await asyncio.to_thread(sha256_of, partial)
            if actual != sha256:
                raise StorageError(f"{key} version {sha256}: the store sent bytes with sha256 {actual}")
            await asyncio.to_thread(os.replace, partial, cached)
        finally:
            await asyncio.to_thread(partial.unlink, True)
        self.stats.fetches += 1
        self.stats.fetched_bytes += found.size
        log.info("input fetched", key=key, version=sha256, size=found.size)

    async def trim(self) -> None:
        """Remove the least recently used files not in use until the folder fits ``max_bytes``."""
        busy = set(self._busy)
        evicted, held, count = await asyncio.to_thread(_trim, self.directory, self.max_bytes, busy)
        self.stats.evicted += evicted
        self.stats.bytes, self.stats.files = held, count

    def report(self) -> dict[str, object]:
        return {"directory": str(self.directory), "max_bytes": self.max_bytes, **asdict(self.stats)}


def _link_or_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copyfile(source, dest)  # another file system (a scratch folder mounted apart): a copy
    os.utime(source)  # most recently used


def _trim(directory: Path, max_bytes: int, busy: set[str]) -> tuple[int, int, int]:
    """(files removed, bytes held, files held) after trimming ``directory`` to ``max_bytes``."""
    entries: list[tuple[float, int, Path, bool]] = []
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as scan:
        for entry in scan:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                in_use = st.st_nlink > 1 or entry.name in busy
                entries.append((st.st_mtime, st.st_size, Path(entry.path), in_use))
    held = sum(size for _, size, _, _ in entries)
    removed = 0
    for _mtime, size, path, in_use in sorted(entries, key=lambda e: e[0]):
        if held <= max_bytes:
            break
        if in_use:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
        held -= size
    return removed, held, len(entries) - removed
