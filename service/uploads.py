"""Streaming a multipart upload straight into the store, with a size cap, without buffering the file."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import NamedTuple

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from contracts.storage_full import STORAGE_FULL_ERRNOS, storage_full_reason
from storage import Storage, StoreFull, Version

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
    version: Version


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
    started: bool = False  # the file part's headers were read: its data goes to ``pending``
    size: int = 0
    done: bool = False
    pending: list[bytes] = field(default_factory=list)  # the file's data parsed from the last chunk
    errors: list[UploadRefused] = field(default_factory=list)


def _parser(boundary: bytes, state: _PartState, file_type: str, max_bytes: int) -> MultipartParser:
    """A parser whose (synchronous) callbacks put the ``file`` part's data into ``state.pending``."""

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
        if state.field_name == b"file" and not state.started and not state.done:
            try:
                state.filename, state.original = safe_filename(
                    disp.get(b"filename", b"").decode("utf-8", "replace"), file_type
                )
            except UploadRefused as exc:
                state.errors.append(exc)
                return
            state.started = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if not state.started or state.done or state.errors:
            return
        state.size += end - start
        if state.size > max_bytes:
            state.errors.append(UploadRefused(413, f"file: larger than the limit of {max_bytes} bytes"))
            return
        state.pending.append(data[start:end])

    def on_part_end() -> None:
        if state.started:
            state.done = True
        state.headers = {}

    return MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )


def _missing() -> UploadRefused:
    return UploadRefused(422, "file: missing; send it in a multipart field named 'file'")


async def receive_upload(request: Request, storage: Storage, file_type: str, max_bytes: int) -> Upload:
    """Stream the request's ``file`` part into the store as a new version of ``uploads/<safe name>``;
    its stored name, size, original name and version.

    The body is read until the file part's headers name the file, then the store takes the part's data
    as it is parsed, one request chunk at a time (memory stays flat), and the rest of the body after it:
    a malformed or over-long body fails the store's write, so nobody sees half of the file.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UploadRefused(415, "send the file as multipart/form-data in a field named 'file'")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise UploadRefused(413, f"file: larger than the limit of {max_bytes} bytes")
    state = _PartState()
    parser = _parser(params[b"boundary"], state, file_type, max_bytes)
    body = request.stream().__aiter__()

    def feed(chunk: bytes) -> None:
        parser.write(chunk)
        if state.errors:
            raise state.errors[0]

    async def part_data() -> AsyncIterator[bytes]:
        while True:
            while state.pending:
                yield state.pending.pop(0)
            try:
                chunk = await anext(body)
            except StopAsyncIteration:
                break
            feed(chunk)
        parser.finalize()
        if not state.done:  # the body ended inside the file part
            raise _missing()

    try:
        while not state.started:
            try:
                chunk = await anext(body)
            except StopAsyncIteration:
                parser.finalize()
                raise _missing() from None
            feed(chunk)
        assert state.filename is not None  # set with started
        key = f"uploads/{state.filename}"
        try:
            version = await storage.receive(key, part_data(), max_bytes)
        except UploadRefused:
            raise
        except StoreFull as exc:
            # Not the gateway's fault nor Redis's (the app's OSError handler would say so): 507, the reason.
            raise UploadRefused(507, str(exc)) from exc
        except ValueError as exc:
            if "larger than" in str(exc):  # the store's own cap (the parser's counts the same bytes)
                raise UploadRefused(413, f"file: larger than the limit of {max_bytes} bytes") from None
            raise
        return Upload(state.filename, version.size, state.original, version)
    except UploadRefused:
        raise
    except ValueError as exc:  # the multipart parser's own errors
        raise UploadRefused(400, f"malformed multipart body: {exc}") from None
    except OSError as exc:
        if exc.errno not in STORAGE_FULL_ERRNOS:
            raise
        name = f"uploads/{state.filename}" if state.filename else "uploads/"
        raise UploadRefused(507, f"storage full: {storage_full_reason(exc)} writing {name}") from exc
