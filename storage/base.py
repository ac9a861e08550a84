"""The store of uploads and outputs: one interface, two backends (``storage/local.py``, ``storage/s3.py``).

Keys keep the data directory's layout (``uploads/model.ifc``, ``output/ifcconvert/model.glb``). Every
write is a new immutable *version* of its key, named by the sha256 of its bytes; the key itself always
holds the latest. A job pins the versions of its inputs when it is submitted and reads those bytes,
whatever is written under the same names later. Versions are stored under ``.versions/<key>/<sha256><suffix>``
(the suffix kept: ifcopenshell picks its reader by it), beside the latest, on both backends.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from contracts.paths import suffix_of

VERSIONS = ".versions"  # the prefix of every version's key; never a client's key (dot folders are refused)
INCOMING = ".incoming"  # presigned uploads land here until they are confirmed
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class StorageError(Exception):
    """A store's own failure (unreachable, refused): transient for a job, 503 for a client."""


class NotFound(StorageError):
    """No such key, or no such version of it."""


class StoreFull(StorageError):
    """The disk, the bucket's quota or the server's space is full: a job fails with storage_full, an upload 507."""


@dataclass(frozen=True, slots=True)
class Version:
    """One immutable version of a key: ``version`` is the sha256 of its bytes (what ``?version=`` names)."""

    key: str
    version: str
    size: int
    modified: datetime  # when this version was written (its last write, for bytes written twice)
    latest: bool = False


@dataclass(frozen=True, slots=True)
class PresignedUpload:
    """Where a client PUTs a big model straight to the store, then confirms with ``upload_id``."""

    upload_id: str
    url: str
    method: str
    headers: dict[str, str]
    expires_in: int


def version_key(key: str, sha256: str) -> str:
    """Where ``sha256``'s bytes of ``key`` are kept: ``.versions/<key>/<sha256><suffix>``."""
    return f"{VERSIONS}/{key}/{sha256}{suffix_of(key)}"


def parse_version_key(stored: str) -> tuple[str, str] | None:
    """``(key, sha256)`` of a version's stored key, None for any other key."""
    if not stored.startswith(VERSIONS + "/"):
        return None
    key, _, name = stored[len(VERSIONS) + 1 :].rpartition("/")
    sha = name[:64]
    if not key or not _SHA256.match(sha) or name[64:] != suffix_of(key):
        return None
    return key, sha


def is_version_id(value: str) -> bool:
    """Whether ``value`` is a version id (64 lower-case hex digits)."""
    return bool(_SHA256.match(value))


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Storage(Protocol):
    """What gateway, workers and services need of the store; both backends implement all of it.

    Keys are relative, ``/``-separated, already checked (``contracts.paths.check_relative_path``).
    ``version=None`` means the latest. Methods raise ``NotFound``, ``StoreFull`` or ``StorageError``.
    """

    url: str  # file:///... or s3://bucket/prefix, without credentials

    @property
    def local_root(self) -> Path | None:
        """The folder the keys live in on the local backend (services read it directly); None on S3."""
        ...

    async def receive(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> Version:
        """Write a stream as a new version of ``key`` and make it the latest; nobody sees half of it.
        More than ``max_bytes`` raises ``ValueError`` and leaves nothing behind."""
        ...

    async def publish(self, key: str, source: Path) -> Version:
        """Make a finished local file a new version of ``key`` and the latest (a rename or link on the
        local backend, which consumes ``source``; an upload on S3, which leaves it)."""
        ...

    async def stat(self, key: str, version: str | None = None) -> Version | None:
        """That version of ``key`` (the latest by default), or None when there is none. A latest written
        by other means than this interface (a file copied in by hand) is taken in as a version here."""
        ...

    def versions(self, key: str) -> AsyncIterator[Version]:
        """Every version of ``key``, newest first."""
        ...

    def files(self, prefix: str = "") -> AsyncIterator[Version]:
        """The latest version of every key starting with ``prefix`` (no order promised)."""
        ...

    def all_versions(self) -> AsyncIterator[Version]:
        """Every stored version of every key (what the retention sweep walks)."""
        ...

    async def download(self, key: str, dest: Path, version: str | None = None) -> Version:
        """Write that version's bytes to the local file ``dest`` (made whole, then renamed into place)."""
        ...

    def read(self, key: str, version: str | None = None) -> AsyncIterator[bytes]:
        """That version's bytes as a stream (NotFound at the first step when there is none)."""
        ...

    def local_path(self, key: str, version: str | None = None) -> Path | None:
        """The local file holding that version (local backend, when it exists), for FileResponse and tools."""
        ...

    async def presign_get(self, key: str, version: str | None, filename: str) -> str | None:
        """A URL that downloads that version as ``filename`` without the gateway; None on the local backend."""
        ...

    async def presign_put(self, upload_id: str, max_bytes: int) -> PresignedUpload | None:
        """A URL a client PUTs a file to (confirmed later with ``confirm``); None on the local backend."""
        ...

    async def confirm(self, upload_id: str, key: str, max_bytes: int) -> Version:
        """Take a presigned upload in as a new version of ``key`` (its sha256 computed here); NotFound
        when nothing was uploaded, ``ValueError`` over ``max_bytes``."""
        ...

    async def remove(self, key: str, version: str) -> None:
        """Remove one version; the latest (the key itself) goes too when it is that version."""
        ...

    async def start(self) -> None:
        """Make the backend's clients: called once, in a lifespan or ``on_startup``."""
        ...

    async def close(self) -> None:
        """Close the backend's clients."""
        ...
