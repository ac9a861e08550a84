"""Workflows: submit a DAG of operations, follow it, cancel it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Path, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from service.deps import ApiKeyDep, RedisDep, SettingsDep, StorageDep
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


@router.post("", status_code=202, response_model=WorkflowAccepted)
async def submit_workflow(
    body: WorkflowRequest, request: Request, redis: RedisDep, settings: SettingsDep, _: ApiKeyDep
) -> WorkflowAccepted:
    """Check a DAG of steps (422 names the step at fault), record it and start its first steps."""
    check_callback(body.callback_url, settings)
    try:
        workflow_id = await create_workflow(redis, settings, body, request.state.request_id, request.state.storage)
    except StepInvalid as exc:
        detail = [{"loc": ["body", "steps", exc.step], "msg": str(exc), "type": "invalid_step"}]
        raise HTTPException(422, detail) from None
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return WorkflowAccepted(
        workflow_id=workflow_id,
        status="running",
        status_url=f"{base}/workflows/{workflow_id}",
        ws_url=f"ws{base.removeprefix('http')}/workflows/{workflow_id}/ws",
    )


@router.get("/{workflow_id}")
async def get_workflow(workflow_id: WorkflowId, redis: RedisDep, _: ApiKeyDep) -> dict[str, Any]:
    """The whole graph with each step's status, job, result or error."""
    found = await view(redis, workflow_id)
    if found is None:
        raise HTTPException(404, f"workflow {workflow_id} not found")
    return found


@router.delete("/{workflow_id}", status_code=202)
async def cancel_workflow(
    workflow_id: WorkflowId, redis: RedisDep, settings: SettingsDep, storage: StorageDep, _: ApiKeyDep
) -> dict[str, Any]:
    """Cancel the workflow: steps not started never start, queued ones are cancelled, running ones aborted."""
    before = await cancel(redis, settings, workflow_id, storage)
    if before is None:
        raise HTTPException(404, f"workflow {workflow_id} not found")
    if before != "running":
        raise HTTPException(409, f"workflow {workflow_id} already {before}")
    return await view(redis, workflow_id) or {}


@router.websocket("/{workflow_id}/ws")
async def workflow_socket(ws: WebSocket, workflow_id: WorkflowId) -> None:
    """The graph now, then again on every change of a step; closed when the workflow has ended."""
    settings = cast(Settings, ws.state.settings)
    if not await authenticate(ws, settings):
        return
    redis, hub = ws.state.redis, cast(JobEventHub, ws.state.events)
    current = await view(redis, workflow_id)
    if current is None:
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
            text = json.dumps(current)
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
