"""ifcpipeline's ifcpatch endpoints: the recipe listing, and running a recipe as a job.

The gateway has no ifcopenshell: the listing is asked of the ifcpatch service (which reads every
recipe's signature and docs in a child process) and kept here for ``_LISTING_TTL_S`` seconds, as the
n8n node asks for it before every run. A run is checked against it at submit (a recipe that does not
exist, or an argument that does not fit its parameter, is a 422 naming it), then queued as an
``ifcpatch`` job like any operation; the service checks again when it runs.
"""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Any, cast

import aiohttp
import structlog
from fastapi import APIRouter, Body, HTTPException, Request, Response
from pydantic import BaseModel

from access.scope import ProjectStorage, for_caller, store_key
from contracts.compat_requests import IfcPatchRecipesRequest, IfcPatchRequest
from contracts.files import output_path, resolve_output
from contracts.operations import Operation
from contracts.patch_args import ArgumentRefused, coerce
from contracts.paths import check_relative_path
from contracts.wire import REQUEST_ID_HEADER
from service.deps import ApiKeyDep, SubmitKeyDep
from service.routers.compat_files import resolve_client_path
from service.routers.compat_submit import body_model, submit
from service.routers.operations import IdempotencyKeyHeader
from service.schemas import JobAccepted
from settings import Settings
from storage import Storage

router = APIRouter(tags=["patch (ifcpipeline)"])
log = structlog.get_logger("service.compat")

_LISTING_TTL_S = 30.0
_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)
# Kept for the checks, not shown: the listing answers ifcpipeline's keys (and the docs' own extras).
_INTERNAL_KEYS = ("types", "loadable")
_cache: dict[tuple[bool, bool], tuple[float, dict[str, Any]]] = {}

PatchBody = body_model(Operation.ifcpatch)


class RecipesUnavailable(Exception):
    pass


async def recipes(settings: Settings, request_id: str | None, *, builtin: bool = True,
                  custom: bool = True) -> dict[str, Any]:
    """The ifcpatch service's listing, from the cache when fresh; ``RecipesUnavailable`` without it."""
    key = (builtin, custom)
    cached = _cache.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    headers = {"Accept": "application/json"}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    url = settings.operation_url(Operation.ifcpatch_recipes)
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as http, http.post(
            url, json={"include_builtin": builtin, "include_custom": custom}, headers=headers
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200 or not isinstance(body, dict) or not isinstance(body.get("recipes"), list):
                raise RecipesUnavailable(f"the ifcpatch service answered {resp.status}")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise RecipesUnavailable(f"the ifcpatch service is unreachable: {type(exc).__name__}") from None
    _cache[key] = (time.monotonic() + _LISTING_TTL_S, body)
    return body


def _shown(listing: dict[str, Any]) -> dict[str, Any]:
    shown = []
    for recipe in listing["recipes"]:
        parameters = [{k: v for k, v in p.items() if k not in _INTERNAL_KEYS} for p in recipe.get("parameters", [])]
        shown.append({**{k: v for k, v in recipe.items() if k not in _INTERNAL_KEYS}, "parameters": parameters})
    return {**listing, "recipes": shown}


@router.post("/patch/recipes/list", summary="List ifcpatch recipes with their parameters",
             responses={503: {"description": "the ifcpatch service cannot be reached"}})
async def list_recipes(
    request: Request, _: ApiKeyDep, body: Annotated[IfcPatchRecipesRequest | None, Body()] = None
) -> dict[str, Any]:
    """Every recipe of ifcpatch and of ``IFCFLOW_IFCPATCH_RECIPE_DIR``: name, description, whether it is
    custom, and its parameters (name, type, required, default, description), read from the recipes."""
    wanted = body or IfcPatchRecipesRequest()
    settings = cast(Settings, request.state.settings)
    try:
        listing = await recipes(settings, request.state.request_id, builtin=wanted.include_builtin,
                                custom=wanted.include_custom)
    except RecipesUnavailable as exc:
        raise HTTPException(503, f"{exc}; try again shortly", headers={"Retry-After": "5"}) from None
    return _shown(listing)


def _prefixed(storage: Storage) -> bool:
    """Whether ``storage`` is a view of a project other than ``default`` (its keys are not store keys)."""
    return isinstance(storage, ProjectStorage) and bool(storage.prefix)


def _refused(loc: list[str | int], message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *loc], "msg": message, "type": "patch_refused"}])


async def check_patch(body: IfcPatchRequest, listing: dict[str, Any], storage: Storage) -> None:
    """422 unless the recipe exists (custom when ``use_custom``) and every argument fits its parameter.

    In a project's view (not ``default``'s) the path arguments are rewritten to their full
    store keys: the service resolves them in the whole data directory, as it does every job's paths."""
    known = [r for r in listing["recipes"] if r.get("name") == body.recipe]
    recipe = next((r for r in known if bool(r.get("is_custom")) == body.use_custom), None)
    if recipe is None:
        other = " (there is a custom one: send use_custom true)" if known and not body.use_custom else ""
        kind = "custom recipe" if body.use_custom else "ifcpatch recipe"
        raise _refused(["recipe"], f"{body.recipe!r} is no {kind} of this server{other}; "
                                   "POST /patch/recipes/list lists them")
    parameters = recipe.get("parameters", [])
    # The arguments' paths are looked up in the store (asynchronously) between two passes of the
    # (synchronous) check: the first collects them, the second refuses the first that is not there.
    asked: list[tuple[str, str]] = []

    def collect(role: str, value: str) -> str:
        asked.append((role, value))
        return value

    with contextlib.suppress(ArgumentRefused):  # the second pass names it, or an earlier path refused
        coerce(body.recipe, parameters, body.arguments, collect)
    found = {(role, value): await _patch_path(storage, role, value) for role, value in dict.fromkeys(asked)}

    def resolve_path(role: str, value: str) -> str:
        result = found[(role, value)]
        if isinstance(result, ValueError):
            raise result
        return result

    try:
        converted = coerce(body.recipe, parameters, body.arguments, resolve_path)
    except ArgumentRefused as exc:
        raise _refused(["arguments"] if exc.index is None else ["arguments", exc.index], exc.message) from None
    if _prefixed(storage):
        body.arguments = [converted[i] if p.get("path_role") else value
                          for i, (p, value) in enumerate(zip(parameters, body.arguments, strict=False))]


async def _patch_path(storage: Storage, role: str, value: str) -> str | ValueError:
    """Where a recipe's path argument points, or the error that refuses it."""
    try:
        if role == "output_dir":
            if _prefixed(storage):
                # The service puts such a folder under the store's output/ifcpatch/, outside the project.
                return ValueError("a folder argument (output_dir) is not available to project keys")
            key = check_relative_path(value)
            root = storage.local_root
            # On S3 there are no folders to run into: the output rule alone (output/ifcpatch/).
            folder = resolve_output(root, "ifcpatch", key) if root is not None else output_path("ifcpatch", key)
            if folder is None:
                return ValueError(f"folder {value!r} leaves output/ifcpatch/")
            return folder
        path = await resolve_client_path(storage, value, ("body", "arguments"))
    except (HTTPException, ValueError):
        path = None
    if path is None:
        return ValueError(f"file {value!r} not found in the data directory")
    return store_key(storage, path)


@router.post("/patch/execute", status_code=202, response_model=JobAccepted,
             summary="Run an ifcpatch recipe on a model (a job)",
             responses={200: {"description": "replay of an earlier request with the same Idempotency-Key"}})
async def execute_patch(
    request: Request,
    body: Annotated[BaseModel, Body()],
    api_key: SubmitKeyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Check the recipe and its arguments, then queue the patch: 202 with the job's id."""
    settings = cast(Settings, request.state.settings)
    patch = cast(IfcPatchRequest, body)
    storage = for_caller(request.state.storage, api_key)
    try:
        listing = await recipes(settings, request.state.request_id)
    except RecipesUnavailable as exc:
        if _prefixed(storage):
            # Without the listing nobody knows which arguments name files, to confine them to the project.
            raise HTTPException(503, f"{exc}; a project's patch is checked before it is queued: try again "
                                     "shortly", headers={"Retry-After": "5"}) from None
        # The job waits for the service like any other, and the service checks the recipe when it runs.
        log.warning("patch.unchecked", recipe=patch.recipe, reason=str(exc))
    else:
        await check_patch(patch, listing, storage)
    return await submit(Operation.ifcpatch, request, body, api_key, idempotency_key)


execute_patch.__annotations__["body"] = Annotated[PatchBody, Body()]
