"""ifcpipeline's ifcpatch endpoints: the recipe listing, and running a recipe as a job.

The listing is the ifcpatch service's (``contracts.patch_check.recipes``, cached a few seconds, as the
n8n node asks for it before every run). A run is checked against it at submit (a recipe that does not
exist, or an argument that does not fit its parameter, is a 422 naming it; its path arguments are
confined to the caller's project), then queued as an ``ifcpatch`` job like any operation; the service
checks again when it runs. Workflow steps and schedules run the same check (``workflows.engine``).
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, HTTPException, Request, Response
from pydantic import BaseModel

from access.scope import for_caller
from contracts.compat_requests import IfcPatchRecipesRequest, IfcPatchRequest
from contracts.operations import Operation
from contracts.patch_check import PatchRefused, RecipesUnavailable, check_patch_job, recipes
from service.deps import ApiKeyDep, SubmitKeyDep
from service.routers.compat_submit import body_model, submit
from service.routers.operations import IdempotencyKeyHeader
from service.schemas import JobAccepted
from settings import Settings

router = APIRouter(tags=["patch (ifcpipeline)"])

# Kept for the checks, not shown: the listing answers ifcpipeline's keys (and the docs' own extras).
_INTERNAL_KEYS = ("types", "loadable")

PatchBody = body_model(Operation.ifcpatch)


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


def _refused(exc: PatchRefused) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *exc.loc], "msg": exc.message, "type": "patch_refused"}])


@router.post("/patch/execute", status_code=202, response_model=JobAccepted,
             summary="Run an ifcpatch recipe on a model (a job)",
             responses={200: {"description": "replay of an earlier request with the same Idempotency-Key"},
                        503: {"description": "a project's patch cannot be checked now: the ifcpatch service gives "
                                             "no recipe listing"}})
async def execute_patch(
    request: Request,
    body: Annotated[BaseModel, Body()],
    api_key: SubmitKeyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Check the recipe and its arguments, then queue the patch: 202 with the job's id."""
    settings = cast(Settings, request.state.settings)
    storage = for_caller(request.state.storage, api_key)
    try:
        await check_patch_job(settings, cast(IfcPatchRequest, body), storage, request.state.request_id)
    except RecipesUnavailable as exc:
        # Without the listing nobody knows which arguments name files, to confine them to the project.
        raise HTTPException(503, f"{exc}; a project's patch is checked before it is queued: try again "
                                 "shortly", headers={"Retry-After": "5"}) from None
    except PatchRefused as exc:
        raise _refused(exc) from None
    return await submit(Operation.ifcpatch, request, body, api_key, idempotency_key)


execute_patch.__annotations__["body"] = Annotated[PatchBody, Body()]
