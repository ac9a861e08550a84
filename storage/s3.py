"""The S3 backend: keys are objects under ``s3://bucket/prefix``, versions objects beside them.

The latest of ``uploads/a.ifc`` is the object ``<prefix>/uploads/a.ifc``; each version is a copy at
``<prefix>/.versions/uploads/a.ifc/<sha256>.ifc``. Both carry the sha256 in their metadata
(``x-amz-meta-sha256``), so ``stat`` is one HEAD. An object put in by other means (no such metadata) is
hashed and taken in on its first ``stat``. Streams go up as multipart uploads to ``.incoming/`` and are
copied into place inside the store once whole, so nobody sees half of one.

A bucket lifecycle rule expiring ``<prefix>/.incoming/`` after a day and aborting incomplete multipart
uploads cleans up after processes killed mid-upload and presigned uploads never confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from contracts.storage_full import STORAGE_FULL_ERRNOS, storage_full_reason
from storage.base import (
    INCOMING,
    VERSIONS,
    NotFound,
    PresignedUpload,
    StorageError,
    StoreFull,
    Version,
    is_version_id,
    parse_version_key,
    sha256_of,
    version_key,
)
from storage.s3_io import CHUNK, Changed, PartWriter, attachment, copy, hash_object, part_size, s3_errors

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import HeadObjectOutputTypeDef, ObjectTypeDef

_HEADS = 16  # HEADs in flight while listing files


def _sha_of(head: Mapping[str, Any]) -> str | None:
    sha = head.get("Metadata", {}).get("sha256")
    return sha if isinstance(sha, str) and is_version_id(sha) else None


class S3Storage:
    """Every key an object under ``s3://bucket/prefix``; see the module docstring for the layout.
    Credentials come from the standard AWS chain (environment, profile, instance or pod role)."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, region: str, presign_expires: int,
                 public_endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        # Presigned URLs name the address clients reach the store by, which may not be ours.
        self.public_endpoint_url = public_endpoint_url or endpoint_url
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.presign_expires = presign_expires
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._stack = contextlib.AsyncExitStack()
        self._s3: S3Client | None = None
        self._signer: S3Client | None = None

    @property
    def local_root(self) -> Path | None:
        return None

    async def start(self) -> None:
        s3: dict[str, Any] = {"addressing_style": "path"} if self.endpoint_url else {}
        config = AioConfig(signature_version="s3v4", s3=s3, retries={"mode": "standard"})
        context = AioSession().create_client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )
        self._s3 = cast("S3Client", await self._stack.enter_async_context(context))
        self._signer = self._s3
        if self.public_endpoint_url != self.endpoint_url:
            public = {"addressing_style": "path"} if self.public_endpoint_url else {}
            signing = AioConfig(signature_version="s3v4", s3=public)
            signer = AioSession().create_client(
                "s3", endpoint_url=self.public_endpoint_url, region_name=self.region, config=signing
            )
            self._signer = cast("S3Client", await self._stack.enter_async_context(signer))

    async def close(self) -> None:
        self._s3 = self._signer = None
        await self._stack.aclose()

    # -- names

    @property
    def _presigner(self) -> S3Client:
        if self._signer is None:
            raise StorageError(f"{self.url}: the storage was not started")
        return self._signer

    @property
    def _client(self) -> S3Client:
        if self._s3 is None:
            raise StorageError(f"{self.url}: the storage was not started")
        return self._s3

    def _obj(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, obj: str) -> str:
        return obj[len(self.prefix) + 1 :] if self.prefix else obj

    def _vobj(self, key: str, sha: str) -> str:
        if not is_version_id(sha):
            raise NotFound(f"{key} has no version {sha!r}")
        return self._obj(version_key(key, sha))

    def _incoming(self, upload_id: str) -> str:
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise NotFound(f"no upload {upload_id!r}")
        return self._obj(f"{INCOMING}/{upload_id}")

    # -- small requests

    async def _head(self, obj: str) -> HeadObjectOutputTypeDef | None:
        try:
            with s3_errors(obj):
                return await self._client.head_object(Bucket=self.bucket, Key=obj)
        except NotFound:
            return None

    async def _delete(self, obj: str) -> None:
        with s3_errors(obj):
            await self._client.delete_object(Bucket=self.bucket, Key=obj)

    async def _latest_sha(self, key: str) -> str | None:
        head = await self._head(self._obj(key))
        return None if head is None else _sha_of(head)

    async def _list(self, prefix: str, delimiter: str = "") -> AsyncIterator[list[ObjectTypeDef]]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter=delimiter
        )
        with s3_errors(prefix or self.url):
            async for page in pages:
                yield page.get("Contents", [])

    async def _promote(self, key: str, sha: str, size: int, etag: str) -> Version:
        """Copy version ``sha`` (at ``etag``) over ``key``: readers see the old object or the new one."""
        _etag, modified = await copy(
            self._client, self.bucket, self._vobj(key, sha), self._obj(key), {"sha256": sha}, size, etag
        )
        return Version(key, sha, size, modified, latest=True)

    async def _take_in(self, key: str, sha: str, size: int, etag: str) -> None:
        """Make ``key``'s object, hashed at ``etag``, a version and mark it with its sha."""
        obj, meta = self._obj(key), {"sha256": sha}
        await copy(self._client, self.bucket, obj, self._vobj(key, sha), meta, size, etag)
        await copy(self._client, self.bucket, obj, obj, meta, size, etag)

    # -- writing

    async def receive(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> Version:
        writer = PartWriter(self._client, self.bucket, self._incoming(uuid.uuid4().hex), part_size(max_bytes))
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ValueError(f"larger than the limit of {max_bytes} bytes")
                digest.update(chunk)
                await writer.write(chunk)
            sha = digest.hexdigest()
            meta = {"sha256": sha}
            etag = await writer.finish(self._vobj(key, sha), meta)
            if writer.multipart:
                etag, _ = await copy(self._client, self.bucket, writer.key, self._vobj(key, sha), meta, size, etag)
            return await self._promote(key, sha, size, etag)
        finally:
            await writer.abort()
            if writer.multipart:
                with contextlib.suppress(StorageError):
                    await self._delete(writer.key)

    async def publish(self, key: str, source: Path) -> Version:
        sha = await asyncio.to_thread(sha256_of, source)
        size = (await asyncio.to_thread(source.stat)).st_size
        writer = PartWriter(self._client, self.bucket, self._vobj(key, sha), part_size(size), {"sha256": sha})
        f = await asyncio.to_thread(source.open, "rb")
        try:
            while block := await asyncio.to_thread(f.read, writer.part):
                await writer.write(block)
            etag = await writer.finish()
        finally:
            f.close()
            await writer.abort()
        return await self._promote(key, sha, size, etag)

    async def _adopt(self, key: str) -> Version | None:
        obj = self._obj(key)
        for _ in range(3):  # a writer replacing the object meanwhile: hash what is there now
            try:
                sha, size, etag = await hash_object(self._client, self.bucket, obj)
                await self._take_in(key, sha, size, etag)
            except NotFound:
                return None
            except Changed:
                continue
            head = await self._head(obj)
            if head is not None and _sha_of(head) == sha:
                return Version(key, sha, head["ContentLength"], head["LastModified"], latest=True)
        return None

    # -- reading

    async def stat(self, key: str, version: str | None = None) -> Version | None:
        if version is not None:
            if not is_version_id(version):
                return None
            head = await self._head(self._vobj(key, version))
            if head is None:
                return None
            latest = await self._latest_sha(key) == version
            return Version(key, version, head["ContentLength"], head["LastModified"], latest)
        head = await self._head(self._obj(key))
        if head is None:
            return None
        sha = _sha_of(head)
        if sha is None:
            return await self._adopt(key)
        return Version(key, sha, head["ContentLength"], head["LastModified"], latest=True)

    async def versions(self, key: str) -> AsyncIterator[Version]:
        latest = await self.stat(key)
        found = []
        async for page in self._list(self._obj(f"{VERSIONS}/{key}/"), delimiter="/"):
            for item in page:
                parsed = parse_version_key(self._rel(item["Key"]))
                if parsed is not None and parsed[0] == key:
                    is_latest = latest is not None and parsed[1] == latest.version
                    found.append(Version(key, parsed[1], item["Size"], item["LastModified"], is_latest))
        # Listings count in seconds: of two versions written in the same one, the latest is the newer.
        found.sort(key=lambda v: (v.modified, v.latest), reverse=True)
        for v in found:
            yield v

    async def files(self, prefix: str = "") -> AsyncIterator[Version]:
        """The latest of every key under ``prefix``: one listing, then a HEAD per key for its sha (the
        listing carries no metadata; an object without it is taken in)."""
        limit = asyncio.Semaphore(_HEADS)

        async def one(key: str) -> Version | None:
            async with limit:
                return await self.stat(key)

        async for page in self._list(self._obj(prefix)):
            keys = [self._rel(item["Key"]) for item in page]
            wanted = [k for k in keys if k and not k.endswith("/") and not any(p.startswith(".") for p in k.split("/"))]
            for found in await asyncio.gather(*(one(k) for k in wanted)):
                if found is not None:
                    yield found

    async def all_versions(self) -> AsyncIterator[Version]:
        latest: dict[str, str | None] = {}  # one HEAD per key, not per version
        async for page in self._list(self._obj(VERSIONS + "/")):
            for item in page:
                parsed = parse_version_key(self._rel(item["Key"]))
                if parsed is None:
                    continue
                key, sha = parsed
                if key not in latest:
                    latest[key] = await self._latest_sha(key)
                yield Version(key, sha, item["Size"], item["LastModified"], latest[key] == sha)

    async def download(self, key: str, dest: Path, version: str | None = None) -> Version:
        obj = self._obj(key) if version is None else self._vobj(key, version)
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
        digest, size = hashlib.sha256(), 0
        try:
            with s3_errors(key):
                got = await self._client.get_object(Bucket=self.bucket, Key=obj)
                sha = _sha_of(got)
                sink = await asyncio.to_thread(partial.open, "wb")
                try:
                    async with got["Body"] as body:
                        async for chunk in body.iter_chunks(CHUNK):
                            if sha is None:  # put in by other means: hashed on the way, taken in below
                                digest.update(chunk)
                            size += len(chunk)
                            await asyncio.to_thread(sink.write, chunk)
                finally:
                    sink.close()
            await asyncio.to_thread(os.replace, partial, dest)
        except OSError as exc:
            if exc.errno in STORAGE_FULL_ERRNOS:
                raise StoreFull(f"storage full: {storage_full_reason(exc)} writing {dest}") from exc
            raise
        finally:
            partial.unlink(missing_ok=True)
        if version is not None:
            return Version(key, version, size, got["LastModified"], await self._latest_sha(key) == version)
        if sha is None:
            sha = digest.hexdigest()
            with contextlib.suppress(Changed):
                await self._take_in(key, sha, size, got["ETag"])
        return Version(key, sha, size, got["LastModified"], latest=True)

    async def read(self, key: str, version: str | None = None) -> AsyncIterator[bytes]:
        obj = self._obj(key) if version is None else self._vobj(key, version)
        with s3_errors(key):
            got = await self._client.get_object(Bucket=self.bucket, Key=obj)
            body = got["Body"]
        try:
            while True:
                with s3_errors(key):
                    block = await body.read(CHUNK)
                if not block:
                    return
                yield block
        finally:
            body.close()

    def local_path(self, key: str, version: str | None = None) -> Path | None:
        return None

    # -- links and removal

    async def presign_get(self, key: str, version: str | None, filename: str) -> str | None:
        obj = self._obj(key) if version is None else self._vobj(key, version)
        params = {"Bucket": self.bucket, "Key": obj, "ResponseContentDisposition": attachment(filename)}
        with s3_errors(key):
            return await self._presigner.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=self.presign_expires
            )

    async def presign_put(self, upload_id: str, max_bytes: int) -> PresignedUpload | None:
        # A presigned PUT cannot bound its size (only a POST policy can): confirm() checks it.
        params = {"Bucket": self.bucket, "Key": self._incoming(upload_id)}
        with s3_errors(upload_id):
            url = await self._presigner.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=self.presign_expires, HttpMethod="PUT"
            )
        return PresignedUpload(upload_id, url, "PUT", {}, self.presign_expires)

    async def confirm(self, upload_id: str, key: str, max_bytes: int) -> Version:
        incoming = self._incoming(upload_id)
        head = await self._head(incoming)
        if head is None:
            raise NotFound(f"nothing was uploaded for {upload_id}")
        sha, size, etag = "", head["ContentLength"], ""
        if size <= max_bytes:
            sha, size, etag = await hash_object(self._client, self.bucket, incoming)
        if size > max_bytes:  # checked again: the client may have PUT again since the HEAD
            with contextlib.suppress(StorageError):
                await self._delete(incoming)
            raise ValueError(f"larger than the limit of {max_bytes} bytes")
        meta = {"sha256": sha}
        etag, _ = await copy(self._client, self.bucket, incoming, self._vobj(key, sha), meta, size, etag)
        found = await self._promote(key, sha, size, etag)
        # Only once it is in place: after a failure above, the client can confirm again.
        with contextlib.suppress(StorageError):
            await self._delete(incoming)
        return found

    async def remove(self, key: str, version: str) -> None:
        if not is_version_id(version):
            return
        if await self._latest_sha(key) == version:
            await self._delete(self._obj(key))
        await self._delete(self._vobj(key, version))

