"""An ifcpatch job's recipe and arguments checked against the recipe listing before it is queued, the
same wherever the job is made: ``POST /patch/execute``, a workflow's step (when it is made, and again
when it starts with its earlier results filled in) and a schedule's job (when it fires).

The gateway has no ifcopenshell: the listing is asked of the ifcpatch service (which reads every
recipe's signature and docs in a child process) and kept for ``LISTING_TTL_S`` seconds per process.
The arguments whose parameter names files (``path_role``) are looked up in the caller's view of the
store as an operation's input is (another project's file is "not found", as a missing one), a folder is
kept under the project's ``output/ifcpatch/``, and both are sent on as full store keys: the service
resolves them in the whole data directory, as it does every job's paths. Without the listing nobody
knows which arguments name files, so only the whole store (an admin of ``default``) may queue a patch
unchecked (the service checks the recipe when it runs); everyone else waits for the listing.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import aiohttp
import structlog

from access.scope import ProjectStorage, store_key
from contracts.compat_requests import IfcPatchRequest
from contracts.files import output_dir_path, resolve_output_dir
from contracts.operations import Operation
from contracts.patch_args import ArgumentRefused, coerce
from contracts.paths import check_relative_path
from contracts.stored_paths import find_input
from contracts.wire import REQUEST_ID_HEADER
from settings import Settings
from storage import Storage

__all__ = ["LISTING_TTL_S", "PatchRefused", "RecipesUnavailable", "check_patch_job", "check_patch_request",
           "recipes"]

log = structlog.get_logger("contracts.patch_check")

LISTING_TTL_S = 30.0
_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)
_cache: dict[tuple[bool, bool], tuple[float, dict[str, Any]]] = {}


class RecipesUnavailable(Exception):
    """The ifcpatch service gave no listing (unreachable, or an answer that is none)."""


class PatchRefused(ValueError):
    """A recipe that does not exist or an argument that does not fit; ``loc`` names it in the request
    (``("recipe",)``, ``("arguments", 0)``)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


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
    _cache[key] = (time.monotonic() + LISTING_TTL_S, body)
    return body


def _prefixed(storage: Storage) -> bool:
    """Whether ``storage`` is a view of a project other than ``default`` (its keys are not store keys)."""
    return isinstance(storage, ProjectStorage) and bool(storage.prefix)


async def check_patch_job(settings: Settings, request: IfcPatchRequest, storage: Storage,
                          request_id: str | None = None) -> None:
    """``check_patch_request`` against the current listing. Without one, ``RecipesUnavailable`` for any
    view of the store: a default key that is no admin must not name projects/ either, which only the
    check keeps it from. On the whole store the patch goes unchecked (and is logged)."""
    try:
        listing = await recipes(settings, request_id)
    except RecipesUnavailable as exc:
        if isinstance(storage, ProjectStorage):
            raise
        log.warning("patch.unchecked", recipe=request.recipe, reason=str(exc))
        return
    await check_patch_request(request, listing, storage)


async def check_patch_request(request: IfcPatchRequest, listing: dict[str, Any], storage: Storage) -> None:
    """``PatchRefused`` unless the recipe exists (custom when ``use_custom``) and every argument fits its
    parameter; the path arguments are rewritten in place to what the service is to open."""
    known = [r for r in listing["recipes"] if r.get("name") == request.recipe]
    recipe = next((r for r in known if bool(r.get("is_custom")) == request.use_custom), None)
    if recipe is None:
        other = " (there is a custom one: send use_custom true)" if known and not request.use_custom else ""
        kind = "custom recipe" if request.use_custom else "ifcpatch recipe"
        raise PatchRefused(("recipe",), f"{request.recipe!r} is no {kind} of this server{other}; "
                                        "POST /patch/recipes/list lists them")
    parameters = recipe.get("parameters", [])
    # The arguments' paths are looked up in the store (asynchronously) between two passes of the
    # (synchronous) check: the first collects them, the second refuses the first that is not there.
    asked: list[tuple[str, str]] = []

    def collect(role: str, value: str) -> str:
        asked.append((role, value))
        return value

    with contextlib.suppress(ArgumentRefused):  # the second pass names it, or an earlier path refused
        coerce(request.recipe, parameters, request.arguments, collect)
    found = {(role, value): await _patch_path(storage, role, value) for role, value in dict.fromkeys(asked)}

    def resolve_path(role: str, value: str) -> str:
        result = found[(role, value)]
        if isinstance(result, ValueError):
            raise result
        return result

    try:
        converted = coerce(request.recipe, parameters, request.arguments, resolve_path)
    except ArgumentRefused as exc:
        raise PatchRefused(("arguments",) if exc.index is None else ("arguments", exc.index), exc.message) from None
    request.arguments = [converted[i] if _as_store_key(p, storage) else value
                         for i, (p, value) in enumerate(zip(parameters, request.arguments, strict=False))]


def _as_store_key(parameter: dict[str, Any], storage: Storage) -> bool:
    """Whether an argument is sent on as the full store key it was checked as: a folder always (the job's
    record then names where the recipe writes, ``output/ifcpatch/parts`` for ``parts``), a file in a
    project's view (the service resolves it in the whole store); default's files go as the client wrote
    them, which the service finds the same way."""
    role = parameter.get("path_role")
    return role == "output_dir" or (bool(role) and _prefixed(storage))


async def _patch_path(storage: Storage, role: str, value: str) -> str | ValueError:
    """The full store key a recipe's path argument names (relative to the caller's project), or the
    error that refuses it."""
    if role == "output_dir":
        return _output_dir(storage, value)
    try:
        relative = check_relative_path(value)
    except ValueError:
        relative = None  # can never be a file of the data directory: as missing as any other
    hidden = relative is not None and any(part.startswith(".") for part in relative.split("/"))
    path = None if relative is None or hidden else await find_input(storage, relative)
    if path is None:
        return ValueError(f"file {value!r} not found in the data directory")
    return store_key(storage, path)


def _output_dir(storage: Storage, value: str) -> str | ValueError:
    """A folder the recipe writes into, kept under the project's output/ifcpatch/ as an output file is
    (``parts`` and ``output/ifcpatch/parts`` are the same folder); it may exist already."""
    try:
        key = check_relative_path(value)
    except ValueError as exc:
        return ValueError(f"folder {value!r} {exc}")
    if any(part.startswith(".") and part != "." for part in key.split("/")):
        return ValueError(f"folder {value!r} names a hidden folder")  # the store's own (.versions, ...)
    root = storage.local_root  # a project's view: the project's own folder, links out of it refused
    # On S3 there are no folders or links to run into: the output rule alone (output/ifcpatch/).
    folder = resolve_output_dir(root, "ifcpatch", key) if root is not None else output_dir_path("ifcpatch", key)
    if folder is None:
        return ValueError(f"folder {value!r} leaves output/ifcpatch/ or is a file")
    return store_key(storage, folder)
