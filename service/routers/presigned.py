"""Presigned uploads: a big model goes straight to the store, not through the gateway's multipart parser.

``POST /uploads/presign`` hands out a one-time URL: on S3 the store's own presigned PUT, on the local
backend the gateway's ``PUT /uploads/presigned/{upload_id}`` (the unguessable id is its credential, as a
presigned URL's signature is). The pending upload (target, size cap, caller) waits in Redis for as long
as the URL works; ``POST /uploads/confirm`` then takes the bytes in as a new version of the target and
answers as ``POST /upload`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any, cast

import orjson
import structlog
from fastapi import APIRouter, Body, HTTPException, Request, Response
from fastapi import Path as PathParam

from access.audit import audit
from access.grants import Caller
from access.quotas import check_storage
from access.scope import unwrap
from contracts.storage_full import STORAGE_FULL_ERRNOS, storage_full_reason
from service.deps import RedisDep, ScopedStorageDep, SettingsDep, StorageDep, SubmitKeyDep
from service.routers.files import refused, upload_result
from service.schemas import ConfirmRequest, PresignedUploadInfo, PresignRequest, UploadResult
from service.uploads import Upload, UploadRefused, safe_filename
from storage import NotFound, Storage, StoreFull
from storage.local import LocalStorage
from store import keys

log = structlog.get_logger("service.files")
router = APIRouter(tags=["files"])
UploadId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{20,128}$")]


def _caller(api_key: Caller) -> str:
    # Only the key's public id is kept: a Redis dump must not hand out API keys.
    return api_key.key_id


async def _pending(redis: Any, upload_id: str) -> dict[str, Any] | None:
    raw = await redis.get(keys.presigned_upload(upload_id))
    return cast(dict[str, Any], orjson.loads(raw)) if raw else None


@router.post("/uploads/presign", response_model=PresignedUploadInfo, status_code=201)
async def presign(
    body: Annotated[PresignRequest, Body()], request: Request, settings: SettingsDep, storage: ScopedStorageDep,
    redis: RedisDep, api_key: SubmitKeyDep,
) -> PresignedUploadInfo:
    """A URL to PUT one file to, for ``IFCFLOW_PRESIGN_EXPIRES`` seconds; then ``POST /uploads/confirm``.
    422 for a name the type does not allow, 413 for a declared size over the upload limit, 507 for one
    the project's storage quota has no room for (checked again at the confirm, with the real size)."""
    try:
        name, original = safe_filename(body.filename, body.file_type)
    except UploadRefused as exc:
        raise HTTPException(422, [{"loc": ["body", "filename"], "msg": exc.message.removeprefix("file: "),
                                   "type": "value_error"}]) from None
    limit = settings.max_upload_bytes
    if body.size is not None and body.size > limit:
        raise HTTPException(413, f"size: larger than the limit of {limit} bytes")
    await check_storage(redis, settings, storage, api_key, body.size or 0)
    upload_id = secrets.token_urlsafe(32)
    signed = await storage.presign_put(upload_id, limit)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    if signed is None:  # the local backend: the gateway takes the PUT itself
        url, method, headers, expires = f"{base}/uploads/presigned/{upload_id}", "PUT", {}, settings.presign_expires
    else:
        url, method, headers, expires = signed.url, signed.method, signed.headers, signed.expires_in
    pending = {"name": name, "original": original, "file_type": body.file_type, "max_bytes": limit,
               "caller": _caller(api_key), "size": body.size}
    await redis.set(keys.presigned_upload(upload_id), orjson.dumps(pending), ex=expires)
    audit(api_key, "upload.presign", path=f"uploads/{name}")
    return PresignedUploadInfo(upload_id=upload_id, url=url, method=method, headers=headers, expires_in=expires,
                               confirm_url=f"{base}/uploads/confirm", path=f"uploads/{name}")


async def _staged_size(storage: Storage, upload_id: str, pending: dict[str, Any]) -> int:
    """The bytes a confirm takes in, for the storage quota: the staged file's size on the local
    backend, the size declared at the presign on S3 (its object is hashed only by the confirm)."""
    inner = unwrap(storage)
    if isinstance(inner, LocalStorage):
        staged = inner.incoming_file(upload_id)
        with contextlib.suppress(OSError):
            return (await asyncio.to_thread(staged.stat)).st_size
    return int(pending.get("size") or 0)


def _write_incoming(storage: LocalStorage, upload_id: str) -> tuple[Any, Path]:
    final = storage.incoming_file(upload_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{uuid.uuid4().hex}-")
    return os.fdopen(fd, "wb"), Path(name)


@router.put("/uploads/presigned/{upload_id}", status_code=200, include_in_schema=False)
async def put_presigned(upload_id: UploadId, request: Request, storage: StorageDep, redis: RedisDep) -> Response:
    """The local backend's presigned PUT: the raw body, up to the pending upload's size cap. No API key:
    the id is a one-time token that only ``POST /uploads/presign`` hands out."""
    pending = await _pending(redis, upload_id)
    if pending is None or not isinstance(storage, LocalStorage):
        raise HTTPException(404, "no such upload (never presigned, expired or confirmed)")
    limit = int(pending["max_bytes"])
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"larger than the limit of {limit} bytes")
    sink, staged = await asyncio.to_thread(_write_incoming, storage, upload_id)
    size = 0
    try:
        with sink:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"larger than the limit of {limit} bytes")
                await asyncio.to_thread(sink.write, chunk)
            await asyncio.to_thread(sink.flush)
            await asyncio.to_thread(os.fsync, sink.fileno())
        # Whole, then in place: a confirm never takes half a file in.
        await asyncio.to_thread(os.replace, staged, storage.incoming_file(upload_id))
    except OSError as exc:
        if exc.errno not in STORAGE_FULL_ERRNOS:
            raise
        message = f"storage full: {storage_full_reason(exc)} writing uploads/{pending['name']}"
        log.warning("upload.storage_full", file_type=pending["file_type"], detail=message)
        raise HTTPException(507, message) from None
    finally:
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
    return Response(status_code=200, headers={"ETag": f'"{size}"'})


@router.post("/uploads/confirm", response_model=UploadResult, status_code=201,
             responses={404: {"description": "no such upload id (or it expired)"},
                        409: {"description": "nothing was PUT to the upload's URL yet"},
                        413: {"description": "the file PUT is larger than the upload limit"}})
async def confirm(
    body: Annotated[ConfirmRequest, Body()], settings: SettingsDep, storage: ScopedStorageDep, redis: RedisDep,
    api_key: SubmitKeyDep,
) -> UploadResult:
    """Take a presigned upload in as a new version of its ``uploads/`` path; the answer of ``POST /upload``.
    Only the key that presigned it confirms it (any other is told there is no such upload)."""
    pending = await _pending(redis, body.upload_id)
    if pending is None or not secrets.compare_digest(pending["caller"], _caller(api_key)):
        raise HTTPException(404, f"no upload {body.upload_id!r} is pending (never presigned, expired, or "
                                 "already confirmed)")
    name, file_type = str(pending["name"]), str(pending["file_type"])
    # The presign counted the size declared then; the confirm what came beyond it.
    staged = await _staged_size(storage, body.upload_id, pending)
    await check_storage(redis, settings, storage, api_key, max(0, staged - int(pending.get("size") or 0)))
    try:
        version = await storage.confirm(body.upload_id, f"uploads/{name}", int(pending["max_bytes"]))
    except NotFound:
        raise HTTPException(409, f"nothing was uploaded for {body.upload_id!r} yet: PUT the file to the url "
                                 "POST /uploads/presign answered, then confirm") from None
    except ValueError:
        await redis.delete(keys.presigned_upload(body.upload_id))  # the store removed the bytes
        raise HTTPException(413, f"file: larger than the limit of {pending['max_bytes']} bytes") from None
    except StoreFull as exc:
        raise refused(UploadRefused(507, str(exc)), file_type) from None
    await redis.delete(keys.presigned_upload(body.upload_id))
    audit(api_key, "upload.confirm", path=f"uploads/{name}", version=version.version, size=version.size)
    return upload_result(Upload(name, version.size, str(pending["original"]), version), file_type)
