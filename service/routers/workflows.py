"""Workflows: submit a DAG of operations, follow it, cancel it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Path, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from access.audit import audit
from access.grants import Caller
from access.quotas import check_submit
from access.scope import client_paths
from contracts.patch_check import RecipesUnavailable
from service.deps import ApiKeyDep, RedisDep, ScopedStorageDep, SettingsDep, StorageDep, SubmitKeyDep
from service.live.auth import CLOSE_NOT_FOUND, authenticate
from service.live.hub import JobEventHub
from service.routers.operations import check_callback
from settings import Settings
from storage import Storage
from workflows.engine import StepInvalid, advance, cancel, create_workflow, step_job_id, view
from workflows.model import WorkflowRequest

router = APIRouter(prefix="/workflows", tags=["workflows"])
WorkflowId = Annotated[str, Path(pattern=r"^[a-f0-9]{32}$")]


class WorkflowAccepted(BaseModel):
    workflow_id: str
    status: str
    status_url: str
    ws_url: str


@router.post("", status_code=202, response_model=WorkflowAccepted,
             responses={503: {"description": "an ifcpatch step of a project cannot be checked now: the ifcpatch "
                                             "service gives no recipe listing"}})
async def submit_workflow(
    body: WorkflowRequest, request: Request, redis: RedisDep, settings: SettingsDep, storage: ScopedStorageDep,
    caller: SubmitKeyDep,
) -> WorkflowAccepted:
    """Check a DAG of steps (422 names the step at fault, and the field of its arguments), record it and
    start its first steps; the workflow and its jobs are the caller's project's, its paths (an ifcpatch
    recipe's too) named inside that project's files. 503 while an ifcpatch step cannot be checked."""
    check_callback(body.callback_url, settings)
    await check_submit(redis, settings, caller)
    try:
        workflow_id = await create_workflow(redis, settings, body, request.state.request_id, storage,
                                            project=caller.project)
    except StepInvalid as exc:
        where = ["body", "steps", exc.step, *(("arguments", *exc.loc) if exc.loc else ())]
        raise HTTPException(422, [{"loc": where, "msg": str(exc), "type": "invalid_step"}]) from None
    except RecipesUnavailable as exc:
        # As POST /patch/execute: a project's ifcpatch step is never recorded unchecked.
        raise HTTPException(503, f"{exc}; a project's ifcpatch step is checked before it is queued: try again "
                                 "shortly", headers={"Retry-After": "5"}) from None
    audit(caller, "workflow.submit", workflow_id=workflow_id, steps=len(body.steps))
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return WorkflowAccepted(
        workflow_id=workflow_id,
        status="running",
        status_url=f"{base}/workflows/{workflow_id}",
        ws_url=f"ws{base.removeprefix('http')}/workflows/{workflow_id}/ws",
    )


async def owned(redis: Any, workflow_id: str, caller: Caller) -> dict[str, Any]:
    """The workflow's view if ``caller`` may see it (its project's, any for an admin), else the 404 of
    an unknown one (nothing says it exists)."""
    found = await view(redis, workflow_id)
    if found is None or not caller.sees(found.get("project")):
        raise HTTPException(404, f"workflow {workflow_id} not found")
    return found


def shown(found: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """A workflow's view with its files named relative to the caller's project."""
    return cast(dict[str, Any], client_paths(found, caller.project))


@router.get("/{workflow_id}")
async def get_workflow(workflow_id: WorkflowId, redis: RedisDep, caller: ApiKeyDep) -> dict[str, Any]:
    """The whole graph with each step's status, job, result or error."""
    return shown(await owned(redis, workflow_id, caller), caller)


@router.delete("/{workflow_id}", status_code=202)
async def cancel_workflow(
    workflow_id: WorkflowId, redis: RedisDep, settings: SettingsDep, storage: StorageDep, caller: SubmitKeyDep
) -> dict[str, Any]:
    """Cancel the workflow: steps not started never start, queued ones are cancelled, running ones aborted."""
    await owned(redis, workflow_id, caller)
    before = await cancel(redis, settings, workflow_id, storage)  # the engine scopes to the workflow's project
    if before is None:
        raise HTTPException(404, f"workflow {workflow_id} not found")
    if before != "running":
        raise HTTPException(409, f"workflow {workflow_id} already {before}")
    audit(caller, "workflow.cancel", workflow_id=workflow_id)
    return shown(await view(redis, workflow_id) or {}, caller)


@router.websocket("/{workflow_id}/ws")
async def workflow_socket(ws: WebSocket, workflow_id: WorkflowId) -> None:
    """The graph now, then again on every change of a step; closed when the workflow has ended."""
    settings = cast(Settings, ws.state.settings)
    caller = await authenticate(ws, settings)
    if caller is None:
        return
    redis, hub = ws.state.redis, cast(JobEventHub, ws.state.events)
    current = await view(redis, workflow_id)
    if current is None or not caller.sees(current.get("project")):
        await ws.close(CLOSE_NOT_FOUND, f"workflow {workflow_id} not found")
        return
    subs = [hub.subscribe(step_job_id(workflow_id, s["id"])) for s in current["steps"]]
    gone = asyncio.create_task(_until_disconnect(ws))
    try:
        sent = ""
        while True:
            current = await view(redis, workflow_id)
            if current is None:
                break
            text = json.dumps(shown(current, caller))
            if text != sent:
                await ws.send_text(text)
                sent = text
            if current["terminal"]:
                break
            # Woken by any step's job event; the tick catches changes that are the workflow's own.
            waits = [asyncio.create_task(s.queue.get()) for s in subs]
            done, _ = await asyncio.wait([*waits, gone], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            if gone in done:
                return
        await ws.close()
    except WebSocketDisconnect:
        pass
    finally:
        gone.cancel()
        for sub in subs:
            hub.unsubscribe(sub)


async def _until_disconnect(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()


async def advance_if_step(redis: Any, settings: Settings, storage: Storage, job_id: str) -> None:
    """After a step's job was cancelled from the jobs API, let its workflow react now."""
    if job_id.startswith("wf-"):
        workflow_id = job_id[3:35]
        await advance(redis, settings, workflow_id, storage)
