"""arq's job and result serializer: msgpack, never pickle, with exceptions carried as ``ErrorInfo``.

arq stores a failed job's exception as its result; msgpack cannot encode exceptions, so they travel
as a tagged map and come back as ``JobError``, which keeps the structured error for the status API.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack

from contracts.wire import ErrorInfo

_ERROR_TAG = "__ifcflow_error__"


class JobError(Exception):
    """A job's failure in a form that survives Redis: type, message, and the service's own detail."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


def error_info(exc: BaseException) -> ErrorInfo:
    """The client-facing error of an exception: a clear type and message, never a traceback."""
    if isinstance(exc, JobError):
        return exc.info
    if isinstance(exc, asyncio.CancelledError):
        return ErrorInfo(type="aborted", message="job aborted")
    if isinstance(exc, TimeoutError):
        return ErrorInfo(type="timeout", message="job exceeded its time limit")
    name = type(exc).__name__
    if name == "JobExecutionFailed":  # arq's own: expired, max retries, unknown function
        return ErrorInfo(type="job_failed", message=str(exc))
    return ErrorInfo(type="internal_error", message=f"{name}: {exc}" if str(exc) else name)


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseException):
        return {_ERROR_TAG: error_info(obj).model_dump()}
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _object_hook(obj: dict[Any, Any]) -> Any:
    if _ERROR_TAG in obj and len(obj) == 1:
        return JobError(ErrorInfo.model_validate(obj[_ERROR_TAG]))
    return obj


def serialize(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, datetime=False)  # type: ignore[no-any-return]


def deserialize(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, object_hook=_object_hook, strict_map_key=False)
