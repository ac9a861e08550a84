"""Files in the data directory: upload inputs, list, download outputs."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse

from contracts.files import inside
from service.deps import ApiKeyDep, SettingsDep
from service.schemas import FileInfo, UploadResult
from service.uploads import UploadRefused, receive_upload

log = structlog.get_logger("service.files")
router = APIRouter(tags=["files"])
_MAX_LISTED = 5000


@router.post("/upload/{file_type}", response_model=UploadResult, status_code=201,
             responses={507: {"description": "storage full: the data directory's disk (or quota) is full"}})
async def upload(
    file_type: Literal["ifc", "ids", "bcf", "csv"], request: Request, settings: SettingsDep, _: ApiKeyDep
) -> UploadResult:
    """Upload a file (multipart field ``file``) into ``uploads/``; 413 over the size limit. A name with
    spaces or other characters is stored in the RQ system's safe form (``original_filename`` keeps it).
    507 when the disk is full ("storage full: ..."); the partial file is removed."""
    try:
        upload = await receive_upload(
            request, settings.data_dir / "uploads", file_type, settings.max_upload_bytes
        )
    except UploadRefused as exc:
        if exc.status_code == 507:
            # The disk, not the request nor the gateway: a warning for the operator, no traceback.
            log.warning("upload.storage_full", file_type=file_type, detail=exc.message)
        if exc.status_code == 422:  # the shape FastAPI documents for 422
            raise HTTPException(422, [{"loc": ["body", "file"], "msg": exc.message, "type": "value_error"}]) from None
        raise HTTPException(exc.status_code, exc.message) from None
    return UploadResult(
        filename=upload.name,
        path=f"uploads/{upload.name}",
        size=upload.size,
        message=f"{file_type.upper()} file {upload.original} uploaded successfully",
        file_path=f"/uploads/{upload.name}",
        original_filename=upload.original,
    )


@router.get("/files", response_model=list[FileInfo])
async def list_files(
    settings: SettingsDep,
    _: ApiKeyDep,
    prefix: Annotated[str, Query(max_length=512, description="only paths starting with this")] = "",
) -> list[FileInfo]:
    """Files in the data directory (uploads and outputs), newest first."""
    return await asyncio.to_thread(_walk, settings.data_dir.resolve(), prefix)


def _walk(root: Path, prefix: str) -> list[FileInfo]:
    found: list[FileInfo] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):  # uploads and outputs still being written
                continue
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if not rel.startswith(prefix):
                continue
            if full.is_symlink() and not inside(root, Path(os.path.realpath(full))):
                continue  # a link out of the data dir: not listed, as it cannot be downloaded
            try:
                st = full.stat()
            except OSError:  # a dangling link, or a file removed since the walk saw it
                continue
            found.append(FileInfo(path=rel, size=st.st_size, modified_at=datetime.fromtimestamp(st.st_mtime, UTC)))
            if len(found) >= _MAX_LISTED:
                break
    found.sort(key=lambda f: f.modified_at, reverse=True)
    return found


@router.get("/files/{path:path}", response_class=FileResponse)
async def download(path: str, settings: SettingsDep, _: ApiKeyDep) -> FileResponse:
    """Download a file from the data directory."""
    root = settings.data_dir.resolve()
    if "\x00" in path:
        raise HTTPException(422, [{"loc": ["path", "path"], "msg": "must not contain NUL", "type": "value_error"}])
    real = Path(os.path.realpath(root / path))
    try:
        found = inside(root, real) and real.is_file()
    except OSError:  # e.g. a name longer than the file system allows
        found = False
    if not found:
        raise HTTPException(404, f"file {path!r} not found")
    return FileResponse(real, filename=real.name)
