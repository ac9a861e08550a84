"""Every IFC service in one process, each under ``/<service>``, for local use and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from contracts.operations import SERVICES
from ifcservices.app import create_service_app, install_error_handlers, runtimes_lifespan
from ifcservices.limits import JobLimits
from ifcservices.service import ServiceRuntime
from ifcservices.stored import StoreAccess
from settings import get_settings


def create_combined_app(
    *, data_dir: Path, concurrency: int = 0, limits: JobLimits | None = None, store: StoreAccess | None = None
) -> FastAPI:
    """One app mounting each service's app at ``/<service>``; ``GET /health`` reports them all.

    With it on port P, ``IFCFLOW_IFCCONVERT_URL=http://host:P/ifcconvert`` and so on. The services
    share one store (and on S3 one input cache: a model two services read is fetched once).
    """
    store = store or StoreAccess.from_settings(get_settings(), data_dir)
    apps = {
        name: create_service_app(name, data_dir=data_dir, concurrency=concurrency, limits=limits, store=store)
        for name in SERVICES
    }
    runtimes: list[ServiceRuntime] = [sub.state.runtime for sub in apps.values()]

    # Starlette does not run the lifespan of mounted apps: the parent runs theirs.
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with runtimes_lifespan(runtimes):
            yield

    app = FastAPI(title="ifcflow IFC services", lifespan=lifespan)
    install_error_handlers(app, "all")

    async def health() -> dict[str, object]:
        return {"status": "ok", "service": "all", "services": {r.service: r.health() for r in runtimes}}

    app.add_api_route("/health", health, methods=["GET"], summary="health of every IFC service")
    for name, sub in apps.items():
        app.mount(f"/{name}", sub)
    return app
