"""The app factory of one IFC service: ``GET /health`` and its operation routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.operations import OPERATIONS, Operation
from contracts.wire import JOB_ID_HEADER, NDJSON, REQUEST_ID_HEADER, ErrorBody, ErrorInfo
from ifcservices.errors import Busy, ServiceError
from ifcservices.limits import JobLimits
from ifcservices.responses import Event, error_response, json_answer, ndjson_lines, wants_ndjson
from ifcservices.runner import warm_up
from ifcservices.service import ServiceRuntime
from ifcservices.stored import StoreAccess

log = structlog.get_logger("ifcservices.app")


def _operation_route(runtime: ServiceRuntime, op: Operation) -> Callable[[Request], Awaitable[Response]]:
    service = runtime.service

    async def operation(request: Request) -> Response:
        bound = log.bind(
            service=service,
            operation=op.value,
            request_id=request.headers.get(REQUEST_ID_HEADER),
            job_id=request.headers.get(JOB_ID_HEADER),
        )
        try:
            parsed = await runtime.parse(op, await request.body())
        except ServiceError as error:
            bound.info("request refused", status=error.status_code, error=error.message)
            return error_response(service, error)
        try:
            ticket = runtime.admit(op, parsed)
        except Busy as busy:
            bound.info("busy", active=runtime.limiter.active, capacity=runtime.limiter.capacity, reason=busy.message)
            return error_response(service, busy)

        started = time.monotonic()
        events: asyncio.Queue[Event] | None = asyncio.Queue() if wants_ndjson(request) else None
        on_progress = None if events is None else (lambda percent, phase: events.put_nowait((percent, phase)))
        task = asyncio.create_task(runtime.execute(op, parsed, on_progress, ticket))

        def finished(done: asyncio.Task[bytes]) -> None:
            outcome = "cancelled" if done.cancelled() else "ok" if done.exception() is None else "error"
            error = None if done.cancelled() or done.exception() is None else str(done.exception())
            bound.info("operation finished", outcome=outcome, error=error, seconds=round(time.monotonic() - started, 3))
            if events is not None:
                events.put_nowait(None)

        task.add_done_callback(finished)
        if events is None:
            return await json_answer(service, task, request)
        return StreamingResponse(ndjson_lines(service, task, events), media_type=NDJSON)

    operation.__name__ = op.value
    return operation


def install_error_handlers(app: FastAPI, service: str) -> None:
    """Unknown routes, wrong methods and bugs answer with an ``ErrorBody`` too, never a traceback."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        info = ErrorInfo(type="http_error", message=str(exc.detail), service=service, status_code=exc.status_code)
        return JSONResponse(ErrorBody(error=info).model_dump(), status_code=exc.status_code, headers=exc.headers)

    async def crash(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", service=service, path=request.url.path, exc_info=exc)
        return error_response(service, ServiceError("internal error in the IFC service"))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, crash)


def add_routes(app: FastAPI, runtime: ServiceRuntime) -> None:
    async def health() -> dict[str, object]:
        return runtime.health()

    app.add_api_route("/health", health, methods=["GET"], summary=f"{runtime.service} health")
    for op in runtime.operations:
        spec = OPERATIONS[op]
        app.add_api_route(spec.path, _operation_route(runtime, op), methods=["POST"], summary=spec.summary)


@asynccontextmanager
async def runtimes_lifespan(runtimes: list[ServiceRuntime]) -> AsyncIterator[None]:
    """Open the store and start the fork server before the first request; kill leftover children
    and close the store on shutdown."""
    stores = list({id(r.store): r.store for r in runtimes}.values())  # the combined app shares one
    for store in stores:
        await store.start()
    try:
        await asyncio.to_thread(warm_up)
        yield
    finally:
        for runtime in runtimes:
            await asyncio.to_thread(runtime.runner.kill_all)
        for store in stores:
            await store.close()


def create_service_app(
    service: str, *, data_dir: Path, concurrency: int = 0, limits: JobLimits | None = None,
    store: StoreAccess | None = None,
) -> FastAPI:
    """The FastAPI app of ``service`` (one of ``contracts.operations.SERVICES``); ``store`` by default
    the one ``IFCFLOW_STORAGE_URL`` names, else ``data_dir`` itself."""
    runtime = ServiceRuntime(service, data_dir=data_dir, concurrency=concurrency, limits=limits, store=store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with runtimes_lifespan([runtime]):
            yield

    app = FastAPI(title=f"ifcflow {service}", lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app, service)
    add_routes(app, runtime)
    return app
