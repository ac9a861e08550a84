"""How a worker and an IFC service talk: request headers, progress stream and error bodies.

A service answers an operation either with one JSON object (the result), or, when the worker's
``Accept`` lists NDJSON, with ``application/x-ndjson`` lines: any number of progress events, then
exactly one result or error event. Failures before streaming starts are a 4xx/5xx status with an
``ErrorBody``; 503 with ``Retry-After`` means busy, try later.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

NDJSON = "application/x-ndjson"
REQUEST_ID_HEADER = "X-Request-ID"
JOB_ID_HEADER = "X-Job-ID"


class ErrorInfo(BaseModel):
    """A job's or a service's error, as clients see it: never a traceback."""

    type: str
    message: str
    service: str | None = None
    status_code: int | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo


class ProgressEvent(BaseModel):
    event: Literal["progress"] = "progress"
    percent: float = Field(ge=0, le=100)
    phase: str = ""


class ResultEvent(BaseModel):
    event: Literal["result"] = "result"
    result: dict[str, Any]


class ErrorEvent(BaseModel):
    event: Literal["error"] = "error"
    error: ErrorInfo
