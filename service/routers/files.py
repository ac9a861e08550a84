"""Files in the store: upload inputs, list them with their versions, download any version."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from access.audit import audit
from access.quotas import check_storage
from contracts.paths import check_relative_path
from service.deps import RedisDep, ScopedStorageDep, SettingsDep, SubmitKeyDep
from service.schemas import FileInfo, FileVersion, UploadResult
from service.uploads import Upload, UploadRefused, receive_upload
from storage import Storage, Version

log = structlog.get_logger("service.files")
router = APIRouter(tags=["files"])
_MAX_LISTED = 5000
_VERSION_LISTS = 16  # version listings in flight (one LIST each on S3)
VERSION_HEADER = "X-Ifcflow-Version"


def upload_result(upload: Upload, file_type: str) -> UploadResult:
    """The answer of an upload, a multipart one or a confirmed presigned one."""
    return UploadResult(
        filename=upload.name,
        path=f"uploads/{upload.name}",
        size=upload.size,
        message=f"{file_type.upper()} file {upload.original} uploaded successfully",
        file_path=f"/uploads/{upload.name}",
        original_filename=upload.original,
        version_id=upload.version.version,
        sha256=upload.version.version,
    )


def refused(exc: UploadRefused, file_type: str) -> HTTPException:
    """An upload's refusal as its HTTP answer (422 in the shape FastAPI documents, naming ``file``)."""
    if exc.status_code == 507:
        # The disk, not the request nor the gateway: a warning for the operator, no traceback.
        log.warning("upload.storage_full", file_type=file_type, detail=exc.message)
    if exc.status_code == 422:
        return HTTPException(422, [{"loc": ["body", "file"], "msg": exc.message, "type": "value_error"}])
    return HTTPException(exc.status_code, exc.message)


@router.post("/upload/{file_type}", response_model=UploadResult, status_code=201,
             responses={507: {"description": "storage full: the store's disk (or quota) is full"}})
async def upload(
    file_type: Literal["ifc", "ids", "bcf", "csv"], request: Request, settings: SettingsDep, redis: RedisDep,
    storage: ScopedStorageDep, caller: SubmitKeyDep,
) -> UploadResult:
    """Upload a file (multipart field ``file``) into ``uploads/``, as a new version of that name; 413
    over the size limit. A name with spaces or other characters is stored in the RQ system's safe form
    (``original_filename`` keeps it). ``version_id`` (the sha256) pins a job to these bytes. 507 when
    the store is full ("storage full: ..."); nothing of the file is kept. The file is the caller's
    project's (``path`` relative to it); 507 also when the project's storage quota would be passed."""
    declared = request.headers.get("content-length", "")
    await check_storage(redis, settings, storage, caller, int(declared) if declared.isdigit() else 0)
    try:
        found = await receive_upload(request, storage, file_type, settings.max_upload_bytes)
    except UploadRefused as exc:
        raise refused(exc, file_type) from None
    audit(caller, "file.upload", path=f"uploads/{found.name}", version=found.version.version, size=found.size)
    return upload_result(found, file_type)


def _info(v: Version) -> FileInfo:
    return FileInfo(path=v.key, size=v.size, modified_at=v.modified, version=v.version)


async def _with_versions(storage: Storage, infos: list[FileInfo]) -> None:
    gate = asyncio.Semaphore(_VERSION_LISTS)

    async def one(info: FileInfo) -> None:
        async with gate:
            info.versions = [
                FileVersion(version=v.version, size=v.size, modified_at=v.modified, latest=v.latest)
                async for v in storage.versions(info.path)
            ]

    await asyncio.gather(*(one(i) for i in infos))


@router.get("/files", response_model=list[FileInfo], response_model_exclude_none=True)
async def list_files(
    storage: ScopedStorageDep,
    prefix: Annotated[str, Query(max_length=512, description="only paths starting with this")] = "",
    versions: Annotated[bool, Query(description="also list every version of each file, newest first")] = False,
) -> list[FileInfo]:
    """The latest of every file of the caller's project (uploads and outputs), newest first, each with
    its ``version`` (sha256); with ``?versions=true`` each file's every version too, the latest marked."""
    found: list[FileInfo] = []
    if prefix.startswith("/") or "\x00" in prefix or any(p.startswith(".") for p in prefix.split("/")):
        return found  # no stored path starts so (and the store's own folders are not listed)
    async for v in storage.files(prefix):
        found.append(_info(v))
        if len(found) >= _MAX_LISTED:
            break
    found.sort(key=lambda f: f.modified_at, reverse=True)
    if versions:
        await _with_versions(storage, found)
    return found


def checked_key(path: str, loc: tuple[str, str] = ("path", "path")) -> str | None:
    """The store key a URL's path names, or None when it can name none (hidden, outside); 422 for NUL."""
    if "\x00" in path:
        raise HTTPException(422, [{"loc": list(loc), "msg": "must not contain NUL", "type": "value_error"}])
    try:
        key = check_relative_path(path)
    except ValueError:
        return None
    if key.startswith("/") or any(part.startswith(".") for part in key.split("/")):
        return None  # the store's own folders (.versions, .incoming, ...) are not served by name
    return key


@router.get("/files/{path:path}", response_class=FileResponse,
            responses={307: {"description": "S3 backend: a presigned URL of the file, valid without the API key"}})
async def download(
    path: str,
    storage: ScopedStorageDep,
    version: Annotated[str | None, Query(max_length=128, description="a version's sha256; default the latest")] = None,
) -> Response:
    """Download a file: the latest, or ``?version=<sha256>`` (404 naming the version when there is
    none). Local backend: the file itself, with ``X-Ifcflow-Version`` and an ETag of its sha256; S3: a
    307 to a presigned URL of the store."""
    key = checked_key(path)
    found = await storage.stat(key, version) if key is not None else None
    if found is None or key is None:
        if key is not None and version is not None and await storage.stat(key) is not None:
            raise HTTPException(404, f"file {path!r} has no version {version!r}")
        raise HTTPException(404, f"file {path!r} not found")
    name = key.rpartition("/")[2]
    headers = {VERSION_HEADER: found.version}
    url = await storage.presign_get(key, found.version, name)  # those bytes, whatever is uploaded next
    if url is not None:
        return RedirectResponse(url, status_code=307, headers=headers)
    local = storage.local_path(key, version)
    if local is None:  # removed since the stat
        raise HTTPException(404, f"file {path!r} not found")
    return FileResponse(local, filename=name, headers={**headers, "ETag": f'"{found.version}"'})
