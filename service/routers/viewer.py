"""The 3D viewer: its page and scripts, the vendored libraries, and the element index it reads."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import FileResponse
from starlette.responses import Response

from contracts.paths import check_relative_path
from service.deps import ScopedStorageDep, SettingsDep
from service.stepindex import IndexCache
from service.stored import find_input, local_copy, serve
from settings import Settings
from storage import Storage, Version

router = APIRouter(tags=["viewer"])
_STATIC = Path(__file__).resolve().parent.parent / "viewer"
VENDOR = _STATIC / "vendor"
_TYPES = {
    ".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png", ".txt": "text/plain",
    ".map": "application/json",
}
# Fixed at import: what can be served is exactly what the package ships, whatever the URL says.
_VIEWER_ASSETS = {p.name: p for p in _STATIC.iterdir() if p.is_file() and p.suffix in (".js", ".css")}
_VENDOR_FILES = {p.relative_to(VENDOR).as_posix(): p for p in VENDOR.rglob("*") if p.is_file()}
_INDEXES = IndexCache()
FilePath = Annotated[str, Query(max_length=1024, description="an IFC file in the data directory")]


def static_file(path: Path) -> FileResponse:
    """A packaged file with its media type, cached by the browser for an hour (the files change only
    with a release; vendored ones carry their version in vendor/VERSIONS.md)."""
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "public, max-age=3600"})


@router.get("/viewer", response_class=FileResponse, include_in_schema=False)
async def viewer_page() -> FileResponse:
    """The viewer page: ``?file=<glb>``, ``?ifc=<ifc>`` or ``?job=<id>``; it asks for the API key."""
    return FileResponse(_STATIC / "index.html", media_type="text/html")


@router.get("/viewer/{asset}", response_class=FileResponse, include_in_schema=False)
async def viewer_asset(asset: str) -> FileResponse:
    """The viewer's own scripts (ES modules) and style sheet."""
    if asset not in _VIEWER_ASSETS:
        raise HTTPException(404, "no such asset")
    return static_file(_VIEWER_ASSETS[asset])


@router.get("/vendor/{path:path}", response_class=FileResponse, include_in_schema=False)
async def vendor_file(path: str) -> FileResponse:
    """three.js, Swagger UI and ReDoc, served by the gateway so nothing comes from a CDN."""
    if path not in _VENDOR_FILES:
        raise HTTPException(404, "no such file")
    return static_file(_VENDOR_FILES[path])


async def _key(storage: Storage, file: str) -> str:
    """The stored path of the model file ``file`` names (looked for as an operation's input is)."""
    try:
        rel = check_relative_path(file)
    except ValueError as exc:
        raise HTTPException(422, [{"loc": ["query", "file"], "msg": str(exc), "type": "value_error"}]) from None
    key = None if any(p.startswith(".") for p in rel.split("/")) else await find_input(storage, rel)
    if key is None:
        raise HTTPException(404, f"file {file!r} not found")
    return key


async def _model(storage: Storage, file: str) -> Version:
    found = await storage.stat(await _key(storage, file))
    if found is None:
        raise HTTPException(404, f"file {file!r} not found")
    return found


async def _ifc_path(storage: Storage, settings: Settings, file: str) -> Path:
    # The index reads a local file: the store's own (by name: the index cache keys it by its mtime and
    # size), or on S3 a copy named by its content.
    if storage.local_root is not None:
        return Path(os.path.realpath(storage.local_root)) / await _key(storage, file)
    return await local_copy(storage, settings, await _model(storage, file), "viewer")


@router.get("/viewer-api/file", response_class=FileResponse)
async def model_file(
    file: FilePath, storage: ScopedStorageDep,
    range_: Annotated[str | None, Header(alias="range", include_in_schema=False)] = None,
) -> Response:
    """The model file the viewer draws (a glb or IFC), streamed by the gateway on both backends: the
    page fetches it from its own origin, so the store needs no CORS rules (a presigned URL on another
    origin would). A single byte range is answered (206)."""
    found = await _model(storage, file)
    return await serve(storage, found.key, found, range_header=range_,
                       headers={"X-Ifcflow-Version": found.version, "Cache-Control": "private, max-age=0"})


@router.get("/viewer-api/elements")
async def elements(file: FilePath, settings: SettingsDep, storage: ScopedStorageDep) -> dict[str, Any]:
    """Class, name and storey of every element of an IFC file, by GlobalId, and its storeys by elevation."""
    path = await _ifc_path(storage, settings, file)
    index = await asyncio.to_thread(_INDEXES.get, path)
    return index.summary()


@router.get("/viewer-api/properties")
async def properties(
    file: FilePath, global_id: Annotated[str, Query(min_length=22, max_length=22)], settings: SettingsDep,
    storage: ScopedStorageDep,
) -> dict[str, Any]:
    """One element's property and quantity sets (the picked element's details in the viewer)."""
    path = await _ifc_path(storage, settings, file)
    index = await asyncio.to_thread(_INDEXES.get, path)
    if global_id not in index.elements:
        raise HTTPException(404, f"no element {global_id} in {file}")
    psets = await asyncio.to_thread(index.property_sets, global_id)
    return {"global_id": global_id, **index.elements[global_id], "property_sets": psets}
