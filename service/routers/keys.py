"""API keys at run time (admin only): create one for a project and role, list them, revoke one.

A key is shown once, in the answer that creates it; at rest it is only its digest (access/key_store.py),
and no listing or log line holds it. The keys of ``IFCFLOW_API_KEYS`` are listed too (``"source":
"configured"``) but revoked only by editing that setting: the gateways read it at start.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from access import key_store
from access.audit import audit
from access.grants import PROJECT_NAME, Caller, Role, check_project
from access.keyring import KeyRing
from service.deps import AdminKeyDep, RedisDep

router = APIRouter(prefix="/keys", tags=["keys"])
ProjectFilter = Annotated[str | None, Query(pattern=PROJECT_NAME.pattern, description="only this project's keys")]
KeyId = Annotated[str, Path(min_length=1, max_length=64, description="the key's id (key_...), as listed")]


class KeyRequest(BaseModel):
    """A new key: whose it is and what it may do."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(description="lower-case letters, digits, '_' and '-', at most 63 (default: the root)")
    role: Role = Field(description="read (look), submit (read + run jobs, upload, cancel), admin (everything)")
    # Shown in listings and audit lines: no control characters, so a name cannot forge a log line.
    name: str = Field("", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", description="what the key is for")

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return check_project(value)


def _keyring(request: Request) -> KeyRing:
    return cast(KeyRing, request.state.keyring)


def _listed(caller: Caller, source: str, created_at: str | None = None,
            created_by: str | None = None) -> dict[str, Any]:
    return {"key_id": caller.key_id, "project": caller.project, "role": caller.role.value, "name": caller.name,
            "created_at": created_at, "created_by": created_by, "source": source}


@router.post("", status_code=201)
async def create_key(body: KeyRequest, redis: RedisDep, caller: AdminKeyDep) -> JSONResponse:
    """A new key of ``project`` with ``role``; the answer's ``key`` is the only time it is shown."""
    key, record = await key_store.create(redis, body.project, body.role, body.name, created_by=caller.key_id)
    audit(caller, "key.create", target_key_id=record.key_id, target_project=record.project,
          target_role=record.role.value, key_name=record.name or None)
    answer = {"key": key, **_listed(record.caller(), "runtime", record.created_at, record.created_by)}
    # A secret in the body: no cache on the way may keep it.
    return JSONResponse(answer, status_code=201, headers={"Cache-Control": "no-store"})


@router.get("")
async def list_keys(request: Request, redis: RedisDep, _: AdminKeyDep, project: ProjectFilter = None) -> dict[str, Any]:
    """Every key (of ``project`` when given), configured ones first, without the keys themselves."""
    configured = [_listed(c, "configured") for c in _keyring(request).configured_callers()
                  if project is None or c.project == project]
    made = [_listed(r.caller(), "runtime", r.created_at, r.created_by)
            for r in await key_store.list_keys(redis, project)]
    return {"keys": configured + made}


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: KeyId, request: Request, redis: RedisDep, caller: AdminKeyDep) -> None:
    """Revoke a run-time key: this gateway refuses it at once, every other one within seconds (the key
    cache's time, access/keyring.py)."""
    keyring = _keyring(request)
    if keyring.is_configured(key_id):
        raise HTTPException(409, f"key {key_id} is configured in IFCFLOW_API_KEYS: remove it from that setting "
                                 "and restart the gateways to revoke it")
    record = await key_store.revoke(redis, key_id)
    if record is None:
        raise HTTPException(404, f"key {key_id} not found")
    keyring.forget(key_id)
    audit(caller, "key.revoke", target_key_id=key_id, target_project=record.project, target_role=record.role.value)
