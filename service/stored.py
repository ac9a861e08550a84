"""Reading the store from the gateway's routes: finding a named input, serving a file's bytes, a local copy.

On the local backend the files are read where they are (the path checks of ``contracts.files``, which
follow links and stay inside the data directory, and ``FileResponse``); on S3 through the store's API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

from fastapi import HTTPException
from fastapi.responses import FileResponse, StreamingResponse
from starlette.responses import Response

from contracts.storage_full import storage_full_reason
from contracts.stored_paths import find_input as find_input  # re-exported: it moved beside the other lookups
from settings import Settings
from storage import Storage, Version

_RANGE_PREFIX = "bytes="


def _content_disposition(filename: str) -> dict[str, str]:
    # FileResponse's own form: RFC 5987 for a name it cannot send as it is.
    quoted = quote(filename)
    if quoted != filename:
        return {"content-disposition": f"attachment; filename*=utf-8''{quoted}"}
    return {"content-disposition": f'attachment; filename="{filename}"'}


def _single_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``bytes=a-b`` range inside the file, else None (the whole file)."""
    if not header or not header.startswith(_RANGE_PREFIX) or "," in header:
        return None
    first_s, _, last_s = header[len(_RANGE_PREFIX):].strip().partition("-")
    try:
        if not first_s:  # the last n bytes
            first, last = max(0, size - int(last_s)), size - 1
        else:
            first, last = int(first_s), min(int(last_s), size - 1) if last_s else size - 1
    except ValueError:
        return None
    return (first, last) if 0 <= first <= last < size else None


async def _slice(chunks: AsyncIterator[bytes], first: int, last: int) -> AsyncIterator[bytes]:
    offset = 0
    try:
        async for chunk in chunks:
            end = offset + len(chunk)
            if end > first:
                yield chunk[max(0, first - offset): last + 1 - offset]
            offset = end
            if offset > last:
                break
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # the store's stream: its connection goes back


async def serve(storage: Storage, key: str, found: Version, *, filename: str | None = None,
                media_type: str | None = None, range_header: str | None = None,
                headers: dict[str, str] | None = None) -> Response:
    """That version's bytes: a ``FileResponse`` on the local backend, streamed from the store on S3
    (for a client that must not be sent elsewhere: a page on this origin, a client without redirects).
    A single byte range is answered (206) on S3 too, as FileResponse answers it."""
    extra = dict(headers or {})
    local = storage.local_path(key, found.version)
    if local is not None:
        return FileResponse(local, filename=filename, media_type=media_type, headers=extra)
    chunks = storage.read(key, found.version)  # found by a stat just now: there unless removed meanwhile
    extra.update(_content_disposition(filename) if filename else {})
    wanted = _single_range(range_header, found.size)
    if wanted is None:
        extra["content-length"] = str(found.size)
        return StreamingResponse(chunks, media_type=media_type or "application/octet-stream",
                                 headers={**extra, "accept-ranges": "bytes"})
    first, last = wanted
    extra.update({"content-length": str(last - first + 1), "content-range": f"bytes {first}-{last}/{found.size}"})
    return StreamingResponse(_slice(chunks, first, last), status_code=206,
                             media_type=media_type or "application/octet-stream", headers=extra)


async def local_copy(storage: Storage, settings: Settings, found: Version, folder: str) -> Path:
    """A local file holding that version: the store's own on the local backend, else a copy in
    ``<scratch>/<folder>/<sha256><suffix>`` (named by its content, so made once and never stale)."""
    local = storage.local_path(found.key, found.version)
    if local is not None:
        return local
    suffix = Path(found.key).suffix
    dest = settings.scratch_root() / folder / f"{found.version}{suffix}"
    if not await asyncio.to_thread(dest.is_file):
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        try:
            await storage.download(found.key, dest, found.version)
        except OSError as exc:
            raise HTTPException(507, f"storage full: {storage_full_reason(exc)} copying {found.key}") from None
    return dest
