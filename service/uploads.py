"""Streaming a multipart upload straight to disk, with a size cap, without buffering the file."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from contracts.storage_full import STORAGE_FULL_ERRNOS, storage_full_reason

ALLOWED_SUFFIXES: dict[str, frozenset[str]] = {
    "ifc": frozenset({".ifc", ".ifczip", ".ifcxml"}),
    "ids": frozenset({".ids", ".xml"}),
    "bcf": frozenset({".bcf", ".bcfzip"}),
    "csv": frozenset({".csv", ".xlsx", ".ods"}),
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_STEM_MAX = 180  # the RQ system's limit: names stay far below any file system's


class Upload(NamedTuple):
    name: str  # as stored in uploads/
    size: int
    original: str  # the client's base name, before it was made safe


class UploadRefused(ValueError):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def storage_name(original: str) -> str:
    """The RQ system's safe form of a client's file name (its ``safe_upload_basename``): the stem folded
    to ASCII, every other run of characters but ``._-`` one ``_``, the extension lower-cased, so
    "Hus Å.IFC" is stored as "Hus_A.ifc" and the same name always lands on the same file."""
    stem, dot, ext = original.rpartition(".")
    if not dot or not stem.strip("."):  # no extension (".ifc" alone is a stem, as os.path.splitext says)
        stem, ext = original, ""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFC", stem)).encode("ascii", "ignore").decode()
    safe = re.sub(r"_+", "_", _UNSAFE_RUN.sub("_", folded)).strip("._-")[:_STEM_MAX].rstrip("._-") or "file"
    suffix = "." + _UNSAFE_RUN.sub("_", ext.lower()) if ext else ""
    return safe + suffix


def safe_filename(raw: str, file_type: str) -> tuple[str, str]:
    """The name an upload is stored under, and the client's base name; never a path."""
    original = PurePosixPath(raw.replace("\\", "/")).name.strip()
    if not original or "\x00" in original or len(original) > 512:
        raise UploadRefused(422, "file: needs a file name (at most 512 characters, no NUL)")
    name = storage_name(original)
    if not _SAFE_NAME.match(name):
        raise UploadRefused(422, "file: name must be letters, digits, '.', '_' or '-' (at most 200)")
    if PurePosixPath(name).suffix.lower() not in ALLOWED_SUFFIXES[file_type]:
        allowed = ", ".join(sorted(ALLOWED_SUFFIXES[file_type]))
        raise UploadRefused(422, f"file: a {file_type} upload must end in one of {allowed}")
    return name, original


@dataclass
class _PartState:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    field_name: bytes = b""
    header_field: bytes = b""
    header_value: bytes = b""
    filename: str | None = None
    original: str = ""
    sink: IO[bytes] | None = None
    size: int = 0
    done: bool = False


async def receive_upload(request: Request, dest_dir: Path, file_type: str, max_bytes: int) -> Upload:
    """Write the request's ``file`` part into ``dest_dir``; returns its stored name, size and original name.

    The file is written under a temporary name and renamed at the end, so nobody sees half of it.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UploadRefused(415, "send the file as multipart/form-data in a field named 'file'")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise UploadRefused(413, f"file: larger than the limit of {max_bytes} bytes")
    dest_dir.mkdir(parents=True, exist_ok=True)
    state = _PartState()
    errors: list[UploadRefused] = []

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[state.header_field.lower()] = state.header_value
        state.header_field = state.header_value = b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state.headers.get(b"content-disposition", b""))
        state.field_name = disp.get(b"name", b"")
        if state.field_name == b"file" and state.sink is None and not state.done:
            try:
                state.filename, state.original = safe_filename(
                    disp.get(b"filename", b"").decode("utf-8", "replace"), file_type
                )
            except UploadRefused as exc:
                errors.append(exc)
                return
            state.sink = tempfile.NamedTemporaryFile(dir=dest_dir, prefix=".upload-", delete=False)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state.sink is None or state.done or errors:
            return
        state.size += end - start
        if state.size > max_bytes:
            errors.append(UploadRefused(413, f"file: larger than the limit of {max_bytes} bytes"))
            return
        state.sink.write(data[start:end])

    def on_part_end() -> None:
        if state.sink is not None:
            state.done = True
        state.headers = {}

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if errors:
                raise errors[0]
        parser.finalize()
        if state.sink is None or not state.done or state.filename is None:
            raise UploadRefused(422, "file: missing; send it in a multipart field named 'file'")
        state.sink.flush()
        # Quotas and network file systems report a failed write only on flush: before the rename.
        os.fsync(state.sink.fileno())
        state.sink.close()
        os.replace(state.sink.name, dest_dir / state.filename)
        return Upload(state.filename, state.size, state.original)
    except ValueError as exc:  # the multipart parser's own errors, and UploadRefused
        if isinstance(exc, UploadRefused):
            raise
        raise UploadRefused(400, f"malformed multipart body: {exc}") from None
    except OSError as exc:
        if exc.errno not in STORAGE_FULL_ERRNOS:
            raise
        # Not the gateway's fault nor Redis's (the app's OSError handler would say so): 507, the reason.
        name = f"uploads/{state.filename}" if state.filename else "uploads/"
        raise UploadRefused(507, f"storage full: {storage_full_reason(exc)} writing {name}") from exc
    finally:
        if state.sink is not None:
            # Closing flushes what is buffered, which fails again on a full disk: the partial file
            # is removed all the same.
            with contextlib.suppress(OSError):
                state.sink.close()
            Path(state.sink.name).unlink(missing_ok=True)
