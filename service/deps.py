"""Dependencies of the routes: state from the lifespan, and the API key check."""

from __future__ import annotations

import hmac
from typing import Annotated, cast

from arq import ArqRedis
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from settings import Settings

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
# Prometheus sends credentials as "Authorization: Bearer <key>"; accepted everywhere the header is.
_bearer = HTTPBearer(auto_error=False)


# async: FastAPI runs plain functions in its thread pool, a hop that costs more than these do.
async def get_settings_dep(request: Request) -> Settings:
    return cast(Settings, request.state.settings)


async def get_redis(request: Request) -> ArqRedis:
    return cast(ArqRedis, request.state.redis)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RedisDep = Annotated[ArqRedis, Depends(get_redis)]


def key_matches(presented: str, settings: Settings) -> bool:
    """Constant-time comparison against every configured key (no early exit on a match)."""
    given = presented.encode()
    matched = False
    for key in settings.api_key_values():
        matched |= hmac.compare_digest(given, key)
    return matched


async def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    """The caller's key: 401 without one, 403 with a wrong one; '' in the explicit open mode."""
    # Settings straight from the request's state rather than as a dependency of their own: each
    # dependency FastAPI solves costs the busiest routes tens of microseconds (docs/performance.md).
    settings = cast(Settings, request.state.settings)
    if settings.allow_anonymous and not settings.api_keys:
        return ""
    presented = api_key or (bearer.credentials if bearer else None)
    if not presented:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    if not key_matches(presented, settings):
        raise HTTPException(403, "invalid API key")
    return presented


ApiKeyDep = Annotated[str, Depends(require_api_key)]
"""Every HTTP route's key check (sockets, which cannot always send headers, use ``service.live.auth``)."""
