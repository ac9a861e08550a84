"""The gateway application: ``uvicorn service.app:app``."""

from __future__ import annotations

import sys
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import OutOfMemoryError, RedisError

from access.quotas import QuotaExceeded
from service.http_limits import raise_open_file_limit
from service.lifespan import lifespan
from service.middleware import BodyLimitMiddleware, RequestContextMiddleware
from service.routers import (
    dashboard,
    docs,
    files,
    health,
    jobs,
    keys,
    live,
    metrics,
    operations,
    presigned,
    schedules,
    workflows,
)
from service.routers import viewer as viewer_routes
from service.routers.compat import COMPAT_ROUTERS
from settings import load_settings_or_exit
from storage import NotFound, StorageError, StoreFull
from store.redis_client import eviction_policy_now, eviction_problem

log = structlog.get_logger("service")

# Bodies of operation requests are small JSON; uploads have their own, larger, limit.
MAX_JSON_BODY = 1024 * 1024


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OutOfMemoryError):
        # Reachable but full (maxmemory under noeviction): nothing new can be stored until it has room.
        log.warning("redis.out_of_memory", error=str(exc))
        return JSONResponse({"detail": "Redis is out of memory: no job can be accepted until it has room "
                                       "(raise maxmemory or let finished jobs expire); try again later"},
                            status_code=503, headers={"Retry-After": "30"})
    log.warning("redis.unavailable", error=type(exc).__name__)
    return JSONResponse({"detail": "Redis is unavailable; try again shortly"}, status_code=503)


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    """The store's failures no route answered itself: a missing file 404, a full store 507, else 503."""
    if isinstance(exc, NotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)
    if isinstance(exc, StoreFull):
        log.warning("storage.full", error=str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=507)
    log.warning("storage.unavailable", error=str(exc))
    return JSONResponse({"detail": "the file store is unavailable; try again shortly"}, status_code=503,
                        headers={"Retry-After": "5"})


async def _quota_exceeded(request: Request, exc: Exception) -> JSONResponse:
    """A project past one of its quotas (access/quotas.py): the client's to wait out or fix, not an error."""
    assert isinstance(exc, QuotaExceeded)
    log.warning("quota.exceeded", status=exc.status, detail=exc.message)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, but echoing only small scalar inputs: its own handler encodes each error's whole
    input, so a 1 MiB array or object cost most of a second of the event loop to send back."""
    errors = []
    for error in exc.errors() if isinstance(exc, RequestValidationError) else []:
        error = dict(error)
        value = error.get("input")
        if isinstance(value, dict | list | tuple | set) or (isinstance(value, str | bytes) and len(value) > 1024):
            error.pop("input")
        errors.append(error)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("http.unhandled_error")
    return JSONResponse({"detail": "internal error; see the gateway log for request id"}, status_code=500)


def create_app() -> FastAPI:
    """Build the gateway; settings and clients are made in the lifespan, not here."""
    app = FastAPI(
        title="ifcflow",
        summary="IFC processing as a service: submit jobs, follow them, fetch the results.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /redoc come from service.routers.docs, with their assets served here, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    for compat_router in COMPAT_ROUTERS:  # ifcpipeline's endpoints: first (service/routers/compat.py)
        app.include_router(compat_router)
    app.include_router(operations.router)
    app.include_router(jobs.router)
    app.include_router(workflows.router)
    app.include_router(schedules.router)
    app.include_router(files.router)
    app.include_router(presigned.router)
    app.include_router(live.router)
    app.include_router(health.router)
    app.include_router(keys.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    app.include_router(viewer_routes.router)
    app.include_router(docs.router)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(QuotaExceeded, _quota_exceeded)
    app.add_exception_handler(RedisError, _redis_down)
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(OSError, _redis_down)
    app.add_exception_handler(Exception, _unexpected)
    # Uploads have their own cap: the multipart one, and the local backend's presigned PUT.
    app.add_middleware(BodyLimitMiddleware, default_max_bytes=MAX_JSON_BODY,
                       exempt_prefixes=("/upload/", "/uploads/presigned/"))
    app.add_middleware(RequestContextMiddleware)
    return app


def __getattr__(name: str) -> Any:
    # `uvicorn service.app:app` reaches the app through here: settings are checked when the server
    # starts, not on import, and a bad value stops it with one line instead of a lifespan traceback.
    if name == "app":
        settings = load_settings_or_exit(require_api_keys=True)
        problem = eviction_problem(eviction_policy_now(settings), settings)
        if problem:
            print(problem, file=sys.stderr)
            raise SystemExit(2)
        raise_open_file_limit()  # before the first connection: the cap must stay below it (http_limits)
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(f"module 'service.app' has no attribute {name!r}")
