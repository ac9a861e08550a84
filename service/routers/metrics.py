"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import ApiKeyDep, RedisDep, SettingsDep
from service.metrics import exposition

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", response_class=Response)
async def metrics(redis: RedisDep, settings: SettingsDep, caller: ApiKeyDep) -> Response:
    """Whole-system metrics in the Prometheus text format (key as X-API-Key or a Bearer token); the
    per-project series (``ifcflow_project_*``) of every project for an admin key, else of its own."""
    only = None if caller.admin else caller.project
    return Response(await exposition(redis, settings, only), media_type=CONTENT_TYPE_LATEST)
