"""One route per operation: validate, check paths, enqueue, answer 202 with the job id."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Body, Header, HTTPException, Request, Response
from pydantic import BaseModel, create_model

from access.audit import audit
from access.quotas import check_submit
from access.scope import for_caller
from contracts.files import PathRefused
from contracts.operations import OPERATIONS, Operation, OperationSpec
from contracts.requests import REQUEST_MODELS, RQ_ONLY_FIELDS
from contracts.stored_paths import check_paths
from contracts.webhooks import CallbackRefused, check_callback_url
from service.deps import SubmitKeyDep
from service.schemas import JobAccepted, JobOptions
from service.submit import IDEMPOTENCY_KEY_MAX, job_id_for, resolve_previous, submit
from settings import Settings
from store import job_store
from store.job_store import IdempotencyConflict
from store.job_view import JobStatus

router = APIRouter(tags=["operations"])

# Sent as "Idempotency-Key"; FastAPI names it, and its 422s, "idempotency-key".
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        max_length=IDEMPOTENCY_KEY_MAX,
        description="the same key with the same body returns the first job instead of a new one",
    ),
]


def job_urls(request: Request, settings: Settings, job_id: str) -> tuple[str, str]:
    """The job's status and WebSocket URLs, under the public URL or the one the client used."""
    http = (settings.public_url or str(request.base_url)).rstrip("/")
    ws = "ws" + http.removeprefix("http")
    return f"{http}/jobs/{job_id}", f"{ws}/jobs/{job_id}/ws"


def accepted(
    request: Request, settings: Settings, job_id: str, status: JobStatus, code: int = 202,
    headers: dict[str, str] | None = None,
) -> Response:
    """A ``JobAccepted`` answer, for a job just made (202) or a replay of one (200)."""
    status_url, ws_url = job_urls(request, settings, job_id)
    body = orjson.dumps({"job_id": job_id, "status": status, "status_url": status_url, "ws_url": ws_url})
    return Response(body, status_code=code, headers=headers, media_type="application/json")


def check_callback(url: str | None, settings: Settings) -> None:
    """422 unless the callback URL's host is allowed and webhooks can be signed."""
    if url is None:
        return
    if settings.webhook_secret is None:
        raise HTTPException(422, [{"loc": ["body", "callback_url"], "type": "callback_refused",
                                   "msg": "webhooks are off on this server (no IFCFLOW_WEBHOOK_SECRET)"}])
    try:
        check_callback_url(url, settings.callback_allowed_hosts)
    except CallbackRefused as exc:
        detail = [{"loc": ["body", "callback_url"], "msg": str(exc), "type": "callback_refused"}]
        raise HTTPException(422, detail) from None


def _body_model(op: Operation) -> type[BaseModel]:
    request_model = REQUEST_MODELS[op]
    return create_model(f"{request_model.__name__}Body", __base__=(request_model, JobOptions))


# One model per operation: the operation's request and the job's options, validated together.
BODY_MODELS: dict[Operation, type[BaseModel]] = {op: _body_model(op) for op in Operation}
_OPTION_FIELDS = set(JobOptions.model_fields)  # what the job keeps and the service never sees


def _rq_defaults(op: Operation) -> dict[str, Any]:
    fields = BODY_MODELS[op].model_fields
    return {name: fields[name].get_default(call_default_factory=True) for name in RQ_ONLY_FIELDS & set(fields)}


# Per operation, the RQ-only fields and their defaults: left out of the job's request while at them.
_RQ_DEFAULTS: dict[Operation, dict[str, Any]] = {op: _rq_defaults(op) for op in Operation}


def _recorded(body: BaseModel, defaults: dict[str, Any]) -> set[str]:
    """The fields not recorded in the job: its options, and RQ-only fields at their defaults."""
    return _OPTION_FIELDS | {name for name, default in defaults.items() if getattr(body, name) == default}


def _make_route(spec: OperationSpec) -> Callable[..., Coroutine[Any, Any, Response]]:
    op = spec.operation
    body_model = BODY_MODELS[op]
    rq_defaults = _RQ_DEFAULTS[op]

    async def submit_operation(
        request: Request,
        body: Annotated[BaseModel, Body()],  # this operation's body model: see below
        api_key: SubmitKeyDep,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        """Check the request's paths and callback, then record and enqueue the job: 202 with its id, or
        200 for a replay of an earlier request with the same Idempotency-Key. The job is the caller's
        project's; its paths are named inside that project's files."""
        # The lifespan's state, read here rather than through dependencies: this is every submit's route,
        # and each dependency FastAPI solves costs it tens of microseconds (docs/performance.md, F15).
        settings: Settings = request.state.settings
        redis = request.state.redis
        # The body is both the operation's request and the job's options: validated once, used as both.
        options = cast(JobOptions, body)
        try:
            await resolve_previous(redis, body, api_key)  # a job id: its result file, checked as a path below
            # Every input pinned to its version now: the job reads those bytes whatever is uploaded later.
            # The project's view: the record gets full store keys, which workers read as they are.
            await check_paths(for_caller(request.state.storage, api_key), body, spec.service)
        except PathRefused as exc:
            raise HTTPException(
                422, [{"loc": ["body", *exc.loc], "msg": exc.message, "type": "path_refused"}]
            ) from None
        check_callback(options.callback_url, settings)
        job_id = job_id_for(idempotency_key, api_key.key_id)
        await check_submit(redis, settings, api_key)
        recorded = body.model_dump(mode="json", by_alias=True, exclude=_recorded(body, rq_defaults))
        try:
            created = await submit(
                request.state.creates,
                op,
                recorded,
                options,
                job_id=job_id,
                request_id=request.state.request_id,
                fresh_id=not idempotency_key,
                project=api_key.project,
            )
        except IdempotencyConflict:
            raise HTTPException(409, "Idempotency-Key was already used with a different request") from None
        if created:
            audit(api_key, "job.submit", job_id=job_id, operation=op.value)
            status = JobStatus.deferred if options.defer_by or options.defer_until else JobStatus.queued
            return accepted(request, settings, job_id, status)
        view = await job_store.get(redis, job_id)
        status = view.status if view else JobStatus.queued
        return accepted(request, settings, job_id, status, 200, {"Idempotent-Replayed": "true"})

    submit_operation.__name__ = f"submit_{op.value}"
    # FastAPI validates and documents the body by its annotation: each operation's own model, which
    # only exists at run time (so the type checker is given the base class above).
    submit_operation.__annotations__["body"] = Annotated[body_model, Body()]
    return submit_operation


for _spec in OPERATIONS.values():
    router.add_api_route(
        _spec.path,
        _make_route(_spec),
        methods=["POST"],
        status_code=202,
        response_model=JobAccepted,
        summary=_spec.summary,
        responses={200: {"description": "replay of an earlier request with the same Idempotency-Key"}},
    )
