"""A project's part of the store: a ``Storage`` view whose keys are relative to the project's folder.

Project ``a``'s files live under ``projects/a/`` (``projects/a/uploads/m.ifc``, versions at
``.versions/projects/a/...`` as for any key); project ``default`` keeps the root layout it had before
projects existed, and the top-level name ``projects/`` is reserved: the default project's view neither
shows nor names anything under it. Only an admin of ``default`` (a bare key, the open mode) works on
the whole store itself, unprefixed. Workers and services never see a view: a job's record holds full
store keys, and the gateway translates at its boundary (``store_key`` in, ``client_paths`` out).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

from access.grants import DEFAULT_PROJECT, PROJECT_NAME, Caller, Role, check_project
from storage.base import NotFound, PresignedUpload, Storage, Version

PROJECTS = "projects"
RESERVED = PROJECTS + "/"

__all__ = [
    "PROJECTS", "RESERVED", "OutsideProject", "ProjectStorage", "client_paths", "for_caller", "for_project",
    "prefix_of", "project_of_key", "sees_whole_store", "store_key", "unwrap",
]


class OutsideProject(ValueError):
    """A write to a key the view may not name: the default project's view naming ``projects/...``, or
    a key whose folder leads out of the project's (a link on the local backend). The gateway answers
    it as a refused path (422 on a request's path field, 404 where a file is looked up)."""


def prefix_of(project: str) -> str:
    """Where a project's keys start in the store: "" for ``default``, ``projects/<p>/`` otherwise."""
    if project == DEFAULT_PROJECT:
        return ""
    return f"{RESERVED}{check_project(project)}/"


def is_reserved(key: str) -> bool:
    """Whether ``key`` lies in the folder of the projects (never a default-project key)."""
    return key == PROJECTS or key.startswith(RESERVED)


def project_of_key(key: str) -> str:
    """The project a full store key belongs to (``projects/a/x`` is ``a``'s, anything else default's)."""
    if key.startswith(RESERVED):
        name, sep, rest = key[len(RESERVED):].partition("/")
        if sep and rest and PROJECT_NAME.match(name) and name != DEFAULT_PROJECT:
            return name
    return DEFAULT_PROJECT


def sees_whole_store(caller: Caller) -> bool:
    """Only an admin of ``default`` (a bare key, the open mode) names keys of the whole store."""
    return caller.role is Role.admin and caller.project == DEFAULT_PROJECT


class ProjectStorage:
    """The store as one project sees it: keys in are prefixed with ``projects/<p>/`` (nothing for
    ``default``), keys out (``Version.key``) made relative again, listings hold the project's keys only.

    The default project's view hides and refuses every key under ``projects/``: ``stat`` and
    ``local_path`` answer None, ``read``/``download``/``remove``/``versions`` raise ``NotFound``
    (``versions`` yields nothing), listings skip them, and ``receive``/``publish``/``confirm`` raise
    ``OutsideProject`` (a ``ValueError``). On the local backend a key whose file resolves (through a
    link) out of the project's folder is treated the same way. The inner store's clients belong to the
    lifespan that made it: ``start``/``close`` do nothing here. Presigned uploads wait in the store's
    shared ``.incoming/`` (their ids are random); ``confirm`` writes to the project's key.
    """

    def __init__(self, inner: Storage, project: str) -> None:
        self.inner = inner
        self.project = project
        self.prefix = prefix_of(project)
        base = inner.url.rstrip("/")
        self.url = f"{base}/{self.prefix.rstrip('/')}" if self.prefix else base

    def __repr__(self) -> str:
        return f"ProjectStorage({self.project!r}, {self.inner.url!r})"

    # -- keys

    def full(self, key: str) -> str:
        """The store key of the view's ``key``."""
        return self.prefix + key

    def relative(self, key: str) -> str:
        """The view's key of store key ``key`` (which ``owns``)."""
        return key[len(self.prefix):]

    def owns(self, store_key: str) -> bool:
        """Whether the store key ``store_key`` is one of this project's."""
        if self.prefix:
            return store_key.startswith(self.prefix) and len(store_key) > len(self.prefix)
        return not is_reserved(store_key)

    def names(self, key: str) -> bool:
        """Whether the view's ``key`` is one it may name (the default view never names ``projects/``),
        and on the local backend its file stays inside the project's folder whatever links it runs through."""
        if not self.prefix and is_reserved(key):
            return False
        root = self.inner.local_root
        if root is None:
            return True
        top = os.path.realpath(root)
        real = os.path.realpath(os.path.join(top, self.full(key)))
        rel = os.path.relpath(real, top).replace(os.sep, "/")
        if rel == "." or rel.startswith("../") or rel == "..":
            return False
        return self.owns(rel)

    def _out(self, found: Version) -> Version:
        return dataclasses.replace(found, key=self.relative(found.key)) if self.prefix else found

    def _named(self, key: str) -> str:
        """The store key of a key the view reads; NotFound for one it may not name."""
        if not self.names(key):
            raise NotFound(f"{key} not found")
        return self.full(key)

    def _writable(self, key: str) -> str:
        if not self.names(key):
            raise OutsideProject(f"{key}: not a path of project {self.project!r}")
        return self.full(key)

    # -- the Storage protocol

    @property
    def local_root(self) -> Path | None:
        root = self.inner.local_root
        if root is None or not self.prefix:
            return root
        return root / self.prefix.rstrip("/")

    async def receive(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> Version:
        return self._out(await self.inner.receive(self._writable(key), chunks, max_bytes))

    async def publish(self, key: str, source: Path) -> Version:
        return self._out(await self.inner.publish(self._writable(key), source))

    async def stat(self, key: str, version: str | None = None) -> Version | None:
        if not self.names(key):
            return None
        found = await self.inner.stat(self.full(key), version)
        return None if found is None else self._out(found)

    async def versions(self, key: str) -> AsyncIterator[Version]:
        if not self.names(key):
            return
        async for found in self.inner.versions(self.full(key)):
            yield self._out(found)

    async def files(self, prefix: str = "") -> AsyncIterator[Version]:
        if not self.prefix and is_reserved(prefix):
            return
        async for found in self.inner.files(self.full(prefix)):
            if self.owns(found.key) and self._listed(found.key):
                yield self._out(found)

    def _listed(self, store_key: str) -> bool:
        # Only the local backend has links; its listing may hold one pointing out of the project.
        return self.inner.local_root is None or self.names(self.relative(store_key))

    async def all_versions(self) -> AsyncIterator[Version]:
        async for found in self.inner.all_versions():
            if self.owns(found.key):
                yield self._out(found)

    async def download(self, key: str, dest: Path, version: str | None = None) -> Version:
        return self._out(await self.inner.download(self._named(key), dest, version))

    async def read(self, key: str, version: str | None = None) -> AsyncIterator[bytes]:
        chunks = self.inner.read(self._named(key), version)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]  # the store's stream: its file or connection

    def local_path(self, key: str, version: str | None = None) -> Path | None:
        if not self.names(key):
            return None
        return self.inner.local_path(self.full(key), version)

    async def presign_get(self, key: str, version: str | None, filename: str) -> str | None:
        return await self.inner.presign_get(self._named(key), version, filename)

    async def presign_put(self, upload_id: str, max_bytes: int) -> PresignedUpload | None:
        return await self.inner.presign_put(upload_id, max_bytes)

    async def confirm(self, upload_id: str, key: str, max_bytes: int) -> Version:
        return self._out(await self.inner.confirm(upload_id, self._writable(key), max_bytes))

    async def remove(self, key: str, version: str) -> None:
        await self.inner.remove(self._named(key), version)

    async def start(self) -> None:
        return None  # the inner store's clients belong to the lifespan that made it

    async def close(self) -> None:
        return None


def unwrap(storage: Storage) -> Storage:
    """The whole store under ``storage`` (itself when it is not a project's view)."""
    return storage.inner if isinstance(storage, ProjectStorage) else storage


def for_project(storage: Storage, project: str, *, whole_store: bool = False) -> Storage:
    """``project``'s view of the store (of the store under ``storage``, when that is a view already);
    ``whole_store`` (an admin of ``default``) gives the whole store itself."""
    inner = unwrap(storage)
    if whole_store:
        return inner
    return ProjectStorage(inner, project)


def for_caller(storage: Storage, caller: Caller) -> Storage:
    """The part of the store ``caller`` works on: the whole store for an admin of ``default``, else
    its project's view."""
    return for_project(storage, caller.project, whole_store=sees_whole_store(caller))


def store_key(view: Storage, rel: str) -> str:
    """The full store key of the view-relative key ``rel`` (``rel`` itself on the whole store)."""
    return view.full(rel) if isinstance(view, ProjectStorage) else rel


def _relative(text: str, prefix: str) -> str:
    if text.startswith(prefix) and len(text) > len(prefix):
        return text[len(prefix):]
    if text.startswith("/" + prefix) and len(text) > len(prefix) + 1:
        return "/" + text[len(prefix) + 1:]
    return text


def client_paths(value: Any, project: str) -> Any:
    """A copy of the JSON-like ``value`` with every string (and dict key) that is a store key of
    ``project`` made relative to the project: ``projects/a/x`` is ``x``, ``/projects/a/x`` is ``/x``.
    Other strings stay as they are; for ``default`` (no prefix) the copy equals ``value``."""
    prefix = prefix_of(project)
    if not prefix:
        return value
    return _translated(value, prefix)


def _translated(value: Any, prefix: str) -> Any:
    if isinstance(value, str):
        return _relative(value, prefix)
    if isinstance(value, dict):
        return {(_relative(k, prefix) if isinstance(k, str) else k): _translated(v, prefix) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_translated(v, prefix) for v in value]
    return value
