"""The real gateway plus one bench-only route: ``uvicorn bench.gateway_app:app``.

``POST /bench/constant`` returns a constant from the same process, behind the same middleware, so the
gateway scenario compares ``POST /ifcconvert`` with what the framework alone costs.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.app import create_app
from settings import load_settings_or_exit

CONSTANT_PATH = "/bench/constant"


async def constant() -> dict[str, str]:
    """A constant, for the baseline of the gateway scenario."""
    return {"status": "ok"}


def build() -> FastAPI:
    application = create_app()
    application.add_api_route(CONSTANT_PATH, constant, methods=["POST"], include_in_schema=False)
    return application


def __getattr__(name: str) -> Any:
    if name == "app":
        load_settings_or_exit(require_api_keys=True)
        globals()["app"] = application = build()
        return application
    raise AttributeError(name)
