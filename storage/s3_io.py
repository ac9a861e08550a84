"""S3 plumbing for ``storage/s3.py``: error mapping, streamed multipart uploads, server-side copies."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from storage.base import NotFound, StorageError, StoreFull

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef

PART = 8 << 20  # a multipart upload's part: the most a stream holds in memory
MAX_PARTS = 10_000  # S3's limit of parts per upload; parts grow for bigger objects
COPY_MAX = 5 << 30  # CopyObject's limit; bigger objects are copied in ranges (UploadPartCopy)
COPY_PART = 1 << 30
CHUNK = 1 << 20

_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
# What S3-compatible servers answer when their disks or a quota are full. EntityTooLarge is among them:
# we never send a part or object over S3's own limits, so it is the server's space limit speaking.
_FULL = frozenset(
    {"QuotaExceeded", "XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "InsufficientStorage",
     "EntityTooLarge", "StorageFull"}
)


class Changed(StorageError):
    """The source of a copy was overwritten since it was read (its ETag no longer matches)."""


def part_size(total: int) -> int:
    """The part size that keeps ``total`` bytes within S3's part count."""
    return max(PART, -(-total // (MAX_PARTS - 1)))


def map_error(exc: ClientError, what: str) -> StorageError:
    """The storage error an S3 error answer means."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _NOT_FOUND or (status == 404 and code != "NoSuchBucket"):
        return NotFound(f"{what} not found")
    if code in _FULL or status == 507:
        return StoreFull(f"storage full: S3 answered {code or status} writing {what}")
    if code == "PreconditionFailed" or status == 412:
        return Changed(f"{what} changed while it was copied")
    return StorageError(f"S3 answered {code or status} for {what}: {error.get('Message', '')}")


@contextlib.contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Turn botocore's and aiohttp's errors into ``NotFound``/``StoreFull``/``StorageError``."""
    try:
        yield
    except ClientError as exc:
        raise map_error(exc, what) from exc
    except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
        raise StorageError(f"S3 unreachable for {what}: {type(exc).__name__}: {exc}") from exc


def attachment(filename: str) -> str:
    """A Content-Disposition that downloads as ``filename`` (RFC 6266, with a plain-ASCII fallback)."""
    plain = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def hash_object(client: S3Client, bucket: str, key: str) -> tuple[str, int, str]:
    """``(sha256, size, etag)`` of an object, streamed."""
    digest, size = hashlib.sha256(), 0
    with s3_errors(key):
        got = await client.get_object(Bucket=bucket, Key=key)
        async with got["Body"] as body:
            async for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return digest.hexdigest(), size, got["ETag"]


async def copy(
    client: S3Client, bucket: str, src: str, dst: str, metadata: Mapping[str, str], size: int, etag: str
) -> tuple[str, datetime]:
    """Copy ``src`` (still at ``etag``, else ``Changed``) to ``dst`` with ``metadata``, inside the store;
    ``(etag, modified)`` of the copy."""
    source: CopySourceTypeDef = {"Bucket": bucket, "Key": src}
    with s3_errors(dst):
        if size <= COPY_MAX:
            done = await client.copy_object(
                Bucket=bucket, Key=dst, CopySource=source, CopySourceIfMatch=etag,
                Metadata=dict(metadata), MetadataDirective="REPLACE",
            )
            result = done["CopyObjectResult"]
            return result.get("ETag", ""), result.get("LastModified", datetime.now(UTC))
        upload = (await client.create_multipart_upload(Bucket=bucket, Key=dst, Metadata=dict(metadata)))["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            for number, start in enumerate(range(0, size, COPY_PART), 1):
                end = min(start + COPY_PART, size) - 1
                part = await client.upload_part_copy(
                    Bucket=bucket, Key=dst, UploadId=upload, PartNumber=number, CopySource=source,
                    CopySourceIfMatch=etag, CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"ETag": part["CopyPartResult"].get("ETag", ""), "PartNumber": number})
            completed = await client.complete_multipart_upload(
                Bucket=bucket, Key=dst, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError):
                await client.abort_multipart_upload(Bucket=bucket, Key=dst, UploadId=upload)
            raise
        return completed.get("ETag", ""), datetime.now(UTC)


class PartWriter:
    """Bytes to one object in parts, holding about one part in memory; an object smaller than one
    part goes up in a single PUT at ``finish``."""

    def __init__(
        self, client: S3Client, bucket: str, key: str, part: int, metadata: Mapping[str, str] | None = None
    ) -> None:
        self.client, self.bucket, self.key, self.part = client, bucket, key, part
        self.metadata = dict(metadata or {})
        self._buffer = bytearray()
        self._upload: str | None = None  # the unfinished multipart upload, if any
        self._started = False
        self._parts: list[CompletedPartTypeDef] = []

    @property
    def multipart(self) -> bool:
        """Whether a multipart upload was started (the object then ends up at ``key``)."""
        return self._started

    async def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= self.part:
            await self._send(bytes(self._buffer[: self.part]))
            del self._buffer[: self.part]

    async def _send(self, body: bytes) -> None:
        with s3_errors(self.key):
            if self._upload is None:
                created = await self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, Metadata=self.metadata
                )
                self._upload, self._started = created["UploadId"], True
            number = len(self._parts) + 1
            sent = await self.client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload, PartNumber=number, Body=body
            )
            self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def finish(self, single_key: str | None = None, metadata: Mapping[str, str] | None = None) -> str:
        """Complete the object and return its ETag. A small one is PUT at ``single_key`` with ``metadata``
        when given (straight to its final place, sparing a copy); a multipart one is always at ``key``."""
        if self._upload is None:
            key = single_key or self.key
            with s3_errors(key):
                put = await self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=bytes(self._buffer), Metadata=dict(metadata or self.metadata)
                )
            return put["ETag"]
        if self._buffer:
            await self._send(bytes(self._buffer))
            self._buffer.clear()
        with s3_errors(self.key):
            done = await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload, MultipartUpload={"Parts": self._parts}
            )
        self._upload = None  # nothing left to abort
        return done.get("ETag", "")

    async def abort(self) -> None:
        """Drop an unfinished multipart upload (its parts cost space until then)."""
        if self._upload is not None:
            upload, self._upload = self._upload, None
            with contextlib.suppress(ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError):
                await self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload)
