"""The local backend: keys are files under one folder (the data directory), versions hard links beside them.

The latest of ``uploads/a.ifc`` is the file ``<root>/uploads/a.ifc``; each version is a hard link at
``<root>/.versions/uploads/a.ifc/<sha256>.ifc``, so keeping every version costs nothing until the name is
overwritten (the old bytes then live on under their version only). A file put in by other means (a
copy by hand, a service writing outputs straight into the folder) is taken in on its first ``stat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

from contracts.storage_full import STORAGE_FULL_ERRNOS, storage_full_reason
from storage.base import (
    INCOMING,
    VERSIONS,
    NotFound,
    PresignedUpload,
    StoreFull,
    Version,
    is_version_id,
    parse_version_key,
    sha256_of,
    version_key,
)

_CHUNK = 1 << 20
_STAGING = ".staging"


def _full(exc: OSError, key: str) -> StoreFull | OSError:
    if exc.errno in STORAGE_FULL_ERRNOS:
        return StoreFull(f"storage full: {storage_full_reason(exc)} writing {key}")
    return exc


class LocalStorage:
    """Every key a file under ``root``; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.resolve().as_uri()

    @property
    def local_root(self) -> Path | None:
        return self.root

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    # -- paths

    def _real_root(self) -> Path:
        return Path(os.path.realpath(self.root))

    def _file(self, key: str) -> Path:
        """``key``'s file, symlinks resolved and confined to the root (NotFound when it escapes)."""
        root = self._real_root()
        path = Path(os.path.realpath(root / key))
        if path == root or root not in path.parents:
            raise NotFound(f"{key} resolves outside the store")
        return path

    def _version_file(self, key: str, sha: str) -> Path:
        return self.root / version_key(key, sha)

    def incoming_file(self, upload_id: str) -> Path:
        """Where the gateway's own presigned PUT writes an upload until it is confirmed."""
        return self.root / INCOMING / upload_id

    # -- writing

    def _commit(self, key: str, staged: Path, sha: str) -> Version:
        """Make ``staged`` (a whole file on this file system) version ``sha`` of ``key`` and its latest."""
        target = self._version_file(key, sha)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            staged.unlink()  # the same bytes again: that version becomes the newest
            os.utime(target)
        else:
            os.replace(staged, target)
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        link = final.with_name(f".link-{uuid.uuid4().hex}")
        os.link(target, link)
        os.replace(link, final)  # readers see the old file or the new one, never half
        st = target.stat()
        return Version(key, sha, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), latest=True)

    def _staging_file(self) -> tuple[int, Path]:
        folder = self.root / _STAGING
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix="put-")
        return fd, Path(name)

    async def receive(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> Version:
        fd, staged = await asyncio.to_thread(self._staging_file)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as sink:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise ValueError(f"larger than the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    await asyncio.to_thread(sink.write, chunk)
                await asyncio.to_thread(sink.flush)
                # Quotas and network file systems report a failed write only on flush: before the rename.
                await asyncio.to_thread(os.fsync, sink.fileno())
            return await asyncio.to_thread(self._commit, key, staged, digest.hexdigest())
        except OSError as exc:
            raise _full(exc, key) from exc
        finally:
            staged.unlink(missing_ok=True)

    async def publish(self, key: str, source: Path) -> Version:
        def run() -> Version:
            try:
                return self._commit(key, source, sha256_of(source))
            except OSError as exc:
                raise _full(exc, key) from exc

        return await asyncio.to_thread(run)

    def adopt(self, key: str) -> Version | None:
        """The latest version of ``key``, taking a file written by other means in as a version
        (blocking; services call it in their child process right after writing an output)."""
        try:
            path = self._file(key)
            st = path.stat()
        except (NotFound, OSError):
            return None
        if not path.is_file():
            return None
        found = self._by_inode(key, st)
        if found is not None:
            return found
        for _ in range(3):  # a writer replacing the file meanwhile: hash what is there now
            with path.open("rb") as f:
                before = os.fstat(f.fileno())
                digest = hashlib.sha256()
                while block := f.read(_CHUNK):
                    digest.update(block)
            sha = digest.hexdigest()
            target = self._version_file(key, sha)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                if not target.exists():
                    link = target.with_name(f".link-{uuid.uuid4().hex}")
                    try:
                        os.link(path, link)
                    except OSError:  # another file system (a symlink out): keep a copy
                        shutil.copyfile(path, link)
                    os.replace(link, target)
                now = path.stat()
            except OSError as exc:
                raise _full(exc, key) from exc
            if (now.st_ino, now.st_mtime_ns, now.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size):
                mtime = datetime.fromtimestamp(now.st_mtime, UTC)
                return Version(key, sha, now.st_size, mtime, latest=True)
        return None

    def _by_inode(self, key: str, st: os.stat_result) -> Version | None:
        folder = self.root / VERSIONS / key
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                vst = entry.stat()
                if (vst.st_ino, vst.st_dev) == (st.st_ino, st.st_dev):
                    parsed = parse_version_key(f"{VERSIONS}/{key}/{entry.name}")
                    if parsed is not None:
                        mtime = datetime.fromtimestamp(st.st_mtime, UTC)
                        return Version(key, parsed[1], st.st_size, mtime, latest=True)
        return None

    # -- reading

    async def stat(self, key: str, version: str | None = None) -> Version | None:
        if version is None:
            return await asyncio.to_thread(self.adopt, key)
        return await asyncio.to_thread(self._stat_version, key, version)

    def _stat_version(self, key: str, version: str) -> Version | None:
        if not is_version_id(version):
            return None
        try:
            vst = self._version_file(key, version).stat()
        except OSError:
            return None
        try:
            latest = self._file(key).stat().st_ino == vst.st_ino
        except (NotFound, OSError):
            latest = False
        return Version(key, version, vst.st_size, datetime.fromtimestamp(vst.st_mtime, UTC), latest)

    def _versions(self, key: str) -> list[Version]:
        self.adopt(key)
        folder = self.root / VERSIONS / key
        try:
            latest_ino = self._file(key).stat().st_ino
        except (NotFound, OSError):
            latest_ino = -1
        found = []
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                parsed = parse_version_key(f"{VERSIONS}/{key}/{entry.name}")
                if parsed is None or not entry.is_file():
                    continue
                st = entry.stat()
                mtime = datetime.fromtimestamp(st.st_mtime, UTC)
                found.append(Version(key, parsed[1], st.st_size, mtime, st.st_ino == latest_ino))
        found.sort(key=lambda v: v.modified, reverse=True)
        return found

    async def versions(self, key: str) -> AsyncIterator[Version]:
        for found in await asyncio.to_thread(self._versions, key):
            yield found

    def _walk(self, top: Path) -> Iterator[tuple[Path, str]]:
        root = self.root
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith("."):  # files still being written
                    full = Path(dirpath) / name
                    yield full, full.relative_to(root).as_posix()

    def _files(self, prefix: str) -> list[Version]:
        top = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        found = []
        for _full_path, rel in self._walk(top):
            if rel.startswith(prefix) and (v := self.adopt(rel)) is not None:
                found.append(v)
        return found

    async def files(self, prefix: str = "") -> AsyncIterator[Version]:
        for found in await asyncio.to_thread(self._files, prefix):
            yield found

    def _all_versions(self) -> list[Version]:
        found = []
        base = self.root / VERSIONS
        for dirpath, _dirnames, filenames in os.walk(base):
            for name in filenames:
                full = Path(dirpath) / name
                parsed = parse_version_key(full.relative_to(self.root).as_posix())
                if parsed is None:
                    continue
                with contextlib.suppress(OSError):
                    st = full.stat()
                    v = self._stat_version(*parsed)
                    mtime = datetime.fromtimestamp(st.st_mtime, UTC)
                    found.append(Version(parsed[0], parsed[1], st.st_size, mtime, bool(v and v.latest)))
        return found

    async def all_versions(self) -> AsyncIterator[Version]:
        for found in await asyncio.to_thread(self._all_versions):
            yield found

    def local_path(self, key: str, version: str | None = None) -> Path | None:
        try:
            path = self._file(key) if version is None else self._version_file(key, version)
        except NotFound:
            return None
        if version is not None and not is_version_id(version):
            return None
        return path if path.is_file() else None

    def _existing(self, key: str, version: str | None) -> Path:
        path = self.local_path(key, version)
        if path is None:
            raise NotFound(f"{key}" + (f" version {version}" if version else "") + " not found")
        return path

    async def download(self, key: str, dest: Path, version: str | None = None) -> Version:
        def run() -> Version:
            source = self._existing(key, version)
            partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
            try:
                shutil.copyfile(source, partial)
                os.replace(partial, dest)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise _full(exc, key) from exc
            found = self.adopt(key) if version is None else self._stat_version(key, version)
            if found is None:
                raise NotFound(f"{key} not found")
            return found

        return await asyncio.to_thread(run)

    async def read(self, key: str, version: str | None = None) -> AsyncIterator[bytes]:
        path = self._existing(key, version)
        f = await asyncio.to_thread(path.open, "rb")
        try:
            while block := await asyncio.to_thread(f.read, _CHUNK):
                yield block
        finally:
            f.close()

    # -- links and removal

    async def presign_get(self, key: str, version: str | None, filename: str) -> str | None:
        return None  # the gateway streams local files itself

    async def presign_put(self, upload_id: str, max_bytes: int) -> PresignedUpload | None:
        return None  # the gateway takes the PUT itself, into incoming_file(upload_id)

    async def confirm(self, upload_id: str, key: str, max_bytes: int) -> Version:
        def run() -> Version:
            staged = self.incoming_file(upload_id)
            try:
                size = staged.stat().st_size
            except OSError:
                raise NotFound(f"nothing was uploaded for {upload_id}") from None
            if size > max_bytes:
                staged.unlink(missing_ok=True)
                raise ValueError(f"larger than the limit of {max_bytes} bytes")
            try:
                return self._commit(key, staged, sha256_of(staged))
            except OSError as exc:
                raise _full(exc, key) from exc

        return await asyncio.to_thread(run)

    async def remove(self, key: str, version: str) -> None:
        def run() -> None:
            target = self._version_file(key, version)
            try:
                vst = target.stat()
            except OSError:
                return
            with contextlib.suppress(NotFound, OSError):
                final = self._file(key)
                if final.stat().st_ino == vst.st_ino:
                    final.unlink()
            target.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                target.parent.rmdir()  # the last version of that key

        await asyncio.to_thread(run)
