"""Dependencies of the routes: state from the lifespan, and the API key check."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, cast

import structlog
from arq import ArqRedis
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from access.grants import ANONYMOUS, Caller, Role, configured_grants, digest, match
from access.keyring import KeyRing
from access.quotas import check_rate
from access.scope import for_caller
from settings import Settings
from storage import Storage

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
# Prometheus sends credentials as "Authorization: Bearer <key>"; accepted everywhere the header is.
_bearer = HTTPBearer(auto_error=False)


# async: FastAPI runs plain functions in its thread pool, a hop that costs more than these do.
async def get_settings_dep(request: Request) -> Settings:
    return cast(Settings, request.state.settings)


async def get_redis(request: Request) -> ArqRedis:
    return cast(ArqRedis, request.state.redis)


async def get_storage(request: Request) -> Storage:
    return cast(Storage, request.state.storage)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RedisDep = Annotated[ArqRedis, Depends(get_redis)]
StorageDep = Annotated[Storage, Depends(get_storage)]


def key_matches(presented: str, settings: Settings) -> bool:
    """Constant-time comparison against every configured key (no early exit on a match)."""
    return configured_caller(presented, settings) is not None


def configured_caller(presented: str, settings: Settings) -> Caller | None:
    """The caller a configured key makes (``IFCFLOW_API_KEYS``), compared in constant time."""
    return match(digest(presented), configured_grants(settings.api_key_entries()))


def _presented(api_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str:
    presented = api_key or (bearer.credentials if bearer else None)
    if not presented:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    return presented


async def authenticate(request: Request, presented: str) -> Caller:
    """Who ``presented`` is (configured or run-time key), bound to the request's log lines; 403 if nobody."""
    keyring = cast(KeyRing, request.state.keyring)
    caller = await keyring.authenticate(presented)
    if caller is None:
        raise HTTPException(403, "invalid API key")
    request.state.caller = caller
    structlog.contextvars.bind_contextvars(key_id=caller.key_id, project=caller.project)
    return caller


# Where a request's caller is kept once known: its own ASGI scope. Not request.state, which in-process
# clients (asgi-lifespan) share between requests.
_CALLER = "ifcflow.caller"


async def _caller_of(
    request: Request, api_key: str | None, bearer: HTTPAuthorizationCredentials | None
) -> Caller:
    """The request's caller, authenticated once however many dependencies ask (a route's role check
    and ``ScopedStorageDep``), its project's request rate checked then."""
    known = request.scope.get(_CALLER)
    if known is not None:
        return cast(Caller, known)
    # Settings straight from the request's state rather than as a dependency of their own: each
    # dependency FastAPI solves costs the busiest routes tens of microseconds (docs/performance.md).
    settings = cast(Settings, request.state.settings)
    if settings.allow_anonymous and not settings.api_keys:
        caller = ANONYMOUS
        request.state.caller = caller
    else:
        caller = await authenticate(request, _presented(api_key, bearer))
    request.scope[_CALLER] = caller
    await check_rate(request.state.redis, settings, caller)  # QuotaExceeded: 429 (service/app.py)
    return caller


def _role_check(role: Role) -> Callable[..., Coroutine[Any, Any, Caller]]:
    refused = f"this key's role may not do this: it needs the {role.value} role"

    async def require(
        request: Request,
        api_key: Annotated[str | None, Security(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Caller:
        caller = await _caller_of(request, api_key, bearer)
        if not caller.may(role):
            raise HTTPException(403, refused)
        return caller

    require.__name__ = f"require_{role.value}_key"
    return require


require_api_key = _role_check(Role.read)
require_submit_key = _role_check(Role.submit)
require_admin_key = _role_check(Role.admin)

ApiKeyDep = Annotated[Caller, Depends(require_api_key)]
"""Any valid key (role read or more): the caller. Sockets, which cannot always send headers, use
``service.live.auth``."""
SubmitKeyDep = Annotated[Caller, Depends(require_submit_key)]
"""A key that may change things in its project (role submit or admin)."""
AdminKeyDep = Annotated[Caller, Depends(require_admin_key)]
"""A key of role admin: every project, key management."""


async def scoped_storage(request: Request, caller: ApiKeyDep) -> Storage:
    """The store as the caller sees it: its project's files, keys relative to the project's root (the
    whole store for an admin of ``default``)."""
    return for_caller(cast(Storage, request.state.storage), caller)


ScopedStorageDep = Annotated[Storage, Depends(scoped_storage)]
"""The caller's project's view of the store (``access.scope.for_caller``); needs a read key."""
