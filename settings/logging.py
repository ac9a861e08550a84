"""One structured log stream: structlog for our events, stdlib loggers (arq, uvicorn) routed through it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, BinaryIO, TextIO

import orjson
import structlog

from settings.redaction import redact_processor


class _ExpectedJobFailures(logging.Filter):
    """Drop arq's ERROR-with-traceback line for a job that ended in a ``JobError``.

    A ``JobError`` is an expected end (bad input, a service's 4xx, retries used up): the job function
    already logged it as one ``job.failed`` WARNING with the reason and status code, so arq's line
    (``logger.exception`` in ``Worker.run_job``) would only repeat it with a traceback of our own
    raise. Any other exception is a bug and keeps arq's ERROR line with its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or record.levelno < logging.ERROR:
            return True
        from store.serialization import JobError  # here: store imports settings

        return not isinstance(exc, JobError)


class _NamedBytesLogger(structlog.BytesLogger):
    """structlog's fast bytes logger, carrying the name ``add_logger_name`` reads (as stdlib's do)."""

    def __init__(self, file: BinaryIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLogger(structlog.WriteLogger):
    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def _logger_factory(as_json: bool) -> Callable[..., Any]:
    stream = sys.stderr
    binary = getattr(stream, "buffer", None) if as_json else None

    def factory(*args: Any) -> Any:
        name = str(args[0]) if args else ""
        return _NamedBytesLogger(binary, name) if binary is not None else _NamedWriteLogger(stream, name)

    return factory


def _orjson_dumps(event_dict: dict[str, Any], **_: Any) -> bytes:
    return orjson.dumps(event_dict, default=repr)


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Set up structlog and route stdlib logging through the same renderer.

    JSON when stderr is not a TTY (containers, CI), readable console lines otherwise. Our own events
    take structlog's fast path (level filtered before any work, rendered straight to bytes); stdlib
    records (arq, uvicorn, aiohttp) go through a ``ProcessorFormatter`` with the same processors.
    """
    as_json = (not sys.stderr.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_processor,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    fast_renderer: Any = structlog.processors.JSONRenderer(serializer=_orjson_dumps) if as_json else renderer
    factory = _logger_factory(as_json)
    if as_json and not isinstance(factory("probe"), _NamedBytesLogger):
        fast_renderer = renderer  # a text-only stderr (some test runners): render to str instead
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if as_json else structlog.processors.StackInfoRenderer(),
            fast_renderer,
        ],
        logger_factory=factory,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if as_json else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn and arq install their own handlers; hand their records to the root one instead.
    for name in ("uvicorn", "uvicorn.error", "arq", "arq.worker", "arq.jobs"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # The gateway logs each request itself (http.request, with request id and duration): uvicorn's
    # access lines would say it twice.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    # arq logs "→ started" and "← done" for every job; job.started and job.completed say the same with
    # job id, operation, attempt and request id. Its warnings (failures, retries exceeded) stay.
    arq_worker = logging.getLogger("arq.worker")
    arq_worker.setLevel(max(logging.WARNING, root.level))
    if not any(isinstance(f, _ExpectedJobFailures) for f in arq_worker.filters):
        arq_worker.addFilter(_ExpectedJobFailures())
