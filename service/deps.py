"""Dependencies of the routes: state from the lifespan, and the API key check."""

from __future__ import annotations

import hmac
from typing import Annotated, cast

from arq import ArqRedis
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

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


def check_api_key(presented: str | None, settings: Settings) -> str:
    """The caller's key: 401 without one, 403 with a wrong one; '' in the explicit open mode."""
    if settings.allow_anonymous and not settings.api_keys:
        return ""
    if not presented:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    if not key_matches(presented, settings):
        raise HTTPException(403, "invalid API key")
    return presented


def presented_key(request: Request) -> str | None:
    """The key in ``X-API-Key``, else in ``Authorization: Bearer``, for routes that read headers themselves."""
    headers = request.headers
    key = headers.get("x-api-key")
    if key:
        return key
    # Parsed as FastAPI's HTTPBearer parses it, so both ways of checking accept the same headers.
    scheme, credentials = get_authorization_scheme_param(headers.get("authorization"))
    return credentials if scheme.lower() == "bearer" and credentials else None


async def require_api_key(
    settings: SettingsDep,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    """The caller's key: 401 without one, 403 with a wrong one; '' in the explicit open mode."""
    return check_api_key(api_key or (bearer.credentials if bearer else None), settings)


# What routes that check the key themselves (see ``presented_key``) declare in their OpenAPI entry.
API_KEY_SECURITY: list[dict[str, list[str]]] = [{"APIKeyHeader": []}, {"HTTPBearer": []}]


ApiKeyDep = Annotated[str, Depends(require_api_key)]
