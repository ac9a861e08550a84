"""ifcpipeline's file endpoints: the listing its n8n node's dropdowns read, signed download links, and
converted JSON by name.

Every path a client names goes through ``resolve_client_path`` (the same mapping and jail as any
operation's input: ``contracts.paths`` then ``contracts.files``), and a download token names only a
path that passed it; the token is checked and the path confined again when the file is served.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Body, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from access.audit import audit
from access.scope import store_key
from contracts.download_tokens import TokenRefused, mint, verify
from contracts.files import inside
from contracts.paths import check_relative_path
from service.deps import ScopedStorageDep, SettingsDep, StorageDep, SubmitKeyDep
from service.stored import find_input, serve
from settings import Settings
from storage import Storage

router = APIRouter(tags=["files (ifcpipeline)"])
log = structlog.get_logger("service.compat")

LISTED_FOLDERS = ("uploads", "output", "examples")
_MAX_LISTED = 20_000
# Without IFCFLOW_DOWNLOAD_SECRET: a key of this process's own, so links work until it stops.
_PROCESS_SECRET = secrets.token_bytes(32)
_warned = False


async def resolve_client_path(storage: Storage, value: str, loc: tuple[str, str]) -> str | None:
    """The stored path of the existing file ``value`` names (any form an operation's input may take:
    "model.ifc", "/uploads/model.ifc", "/output/json/x.json"), or None; 422 for a path that can never
    be inside the data directory."""
    try:
        relative = check_relative_path(value)
    except ValueError as exc:
        raise HTTPException(422, [{"loc": list(loc), "msg": str(exc), "type": "path_refused"}]) from None
    if any(part.startswith(".") for part in relative.split("/")):
        return None  # the store's own folders (.versions, .incoming, ...)
    return await find_input(storage, relative)


def _secret(settings: Settings) -> bytes:
    global _warned
    if settings.download_secret is not None:
        return settings.download_secret.get_secret_value().encode()
    if not _warned:
        _warned = True
        log.warning("download_links.process_secret",
                    reason="IFCFLOW_DOWNLOAD_SECRET unset: links die with this process and work on no other gateway")
    return _PROCESS_SECRET


class ListDirectories(BaseModel):
    files: list[str] = Field(description="every file, as /uploads/<name>, /output/<service>/<name>, ...")


@router.get("/list_directories", response_model=ListDirectories, summary="List available directories and files")
async def list_directories(storage: ScopedStorageDep) -> ListDirectories:
    """Every file in ``uploads/``, ``output/`` and ``examples/`` of the caller's project, with a leading
    slash (ifcpipeline's form, which every path field accepts), sorted."""
    root = storage.local_root
    if root is not None:  # names only: a walk, without hashing each new file as the store's listing does
        return ListDirectories(files=await asyncio.to_thread(_walk, Path(os.path.realpath(root))))
    found: list[str] = []
    for folder in LISTED_FOLDERS:
        async for v in storage.files(folder + "/"):
            found.append("/" + v.key)
            if len(found) >= _MAX_LISTED:
                return ListDirectories(files=sorted(found))
    return ListDirectories(files=sorted(found))


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for folder in LISTED_FOLDERS:
        for dirpath, dirnames, filenames in os.walk(root / folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # staging folders of running jobs
            for name in filenames:
                full = Path(dirpath) / name
                if name.startswith(".") or (full.is_symlink() and not inside(root, os.path.realpath(full))):
                    continue
                found.append("/" + full.relative_to(root).as_posix())
                if len(found) >= _MAX_LISTED:
                    return sorted(found)
    return sorted(found)


class DownloadRequest(BaseModel):
    """ifcpipeline's ``DownloadRequest``."""

    model_config = ConfigDict(extra="forbid")
    file_path: str = Field(max_length=1024, description="e.g. /output/ifcconvert/model.glb (a /list_directories entry)")


class DownloadLink(BaseModel):
    download_token: str
    token: str = Field(description="the same token (the n8n node reads this one)")
    download_url: str = Field(description="GET it without the API key until expiry")
    expiry: datetime
    file_path: str
    preview_url: str | None = Field(None, description="the 3D viewer on this file (IFC or glTF; it asks for the key)")


@router.post("/create_download_link", response_model=DownloadLink)
async def create_download_link(
    request: Request, body: Annotated[DownloadRequest, Body()], settings: SettingsDep, storage: ScopedStorageDep,
    caller: SubmitKeyDep,
) -> DownloadLink:
    """A link to one file of the caller's project that works without the API key until it expires
    (``IFCFLOW_DOWNLOAD_LINK_TTL``): it hands the file to whoever holds it, so a read key makes none."""
    found = await resolve_client_path(storage, body.file_path, ("body", "file_path"))
    if found is None:
        raise HTTPException(404, f"file {body.file_path!r} not found")
    # The token names the full store key: /download/{token} has no caller, and serves from the whole store.
    token, grant = mint(_secret(settings), store_key(storage, found), settings.download_link_ttl)
    audit(caller, "link.create", path=found, expires_at=grant.expires_at)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return DownloadLink(download_token=token, token=token, download_url=f"{base}/download/{token}",
                        expiry=datetime.fromtimestamp(grant.expires_at, UTC), file_path=f"/{found}",
                        preview_url=_preview_url(base, found))


def _preview_url(base: str, found: str) -> str | None:
    """ifcpipeline's link for the node's "Create Viewer Link": the viewer page on the file."""
    kind = {".ifc": "ifc", ".glb": "file"}.get(os.path.splitext(found)[1].lower())
    return f"{base}/viewer?{kind}={quote(found)}" if kind else None


@router.get("/download/{token}", response_class=FileResponse)
async def download(token: str, settings: SettingsDep, storage: StorageDep) -> Response:
    """The file a link names: no API key needed; 403 for an altered token, 410 once it expired.
    Served by the gateway on both backends (the link's clients expect the file, not a redirect)."""
    try:
        grant = verify(_secret(settings), token)
    except TokenRefused as exc:
        raise HTTPException(exc.status_code, exc.message) from None
    root = storage.local_root
    if root is not None:
        top = os.path.realpath(root)
        real = os.path.realpath(os.path.join(top, grant.path))
        if not inside(top, real) or not os.path.isfile(real):  # removed, or a link swapped in since
            raise HTTPException(404, "the file of this link is gone")
        return FileResponse(real, filename=os.path.basename(real))
    found = await storage.stat(grant.path)
    if found is None:
        raise HTTPException(404, "the file of this link is gone")
    return await serve(storage, grant.path, found, filename=grant.path.rpartition("/")[2])


@router.get("/ifc2json/{filename:path}", response_class=FileResponse)
async def get_ifc2json(filename: str, storage: ScopedStorageDep) -> Response:
    """A converted JSON by name ("model.json") or path ("/output/json/model.json", a dropdown value)."""
    if "\x00" in filename or not filename.strip("/"):
        raise HTTPException(422, [{"loc": ["path", "filename"], "msg": "must name a JSON file", "type": "value_error"}])
    base = filename.rstrip("/").rpartition("/")[2]
    found = None
    if "/" in filename.strip("/"):
        found = await resolve_client_path(storage, filename, ("path", "filename"))
    if (found is None or not found.startswith("output/")) and not base.startswith("."):
        found = await find_input(storage, f"output/json/{base}")  # where ifcpipeline kept them
    if found is None or not found.startswith("output/"):
        raise HTTPException(404, f"File {filename} not found")
    root = storage.local_root
    if root is not None:
        return FileResponse(os.path.join(os.path.realpath(root), found), media_type="application/json")
    version = await storage.stat(found)
    if version is None:
        raise HTTPException(404, f"File {filename} not found")
    return await serve(storage, found, version, media_type="application/json")
