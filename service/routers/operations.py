"""One route per operation: validate, check paths, enqueue, answer 202 with the job id."""

# No `from __future__ import annotations`: FastAPI must see the generated body model itself.
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from pydantic import BaseModel, create_model

from contracts.enqueue import IdempotencyConflict
from contracts.files import PathRefused, normalize_paths
from contracts.job_view import JobStatus, read_job
from contracts.operations import OPERATIONS, Operation, OperationSpec
from contracts.requests import REQUEST_MODELS
from contracts.webhooks import CallbackRefused, check_callback_url
from service.deps import ApiKeyDep, RedisDep, SettingsDep
from service.job_control import job_id_for, submit
from service.schemas import JobAccepted, JobOptions
from settings import Settings

router = APIRouter(tags=["operations"])


def job_urls(request: Request, settings: Settings, job_id: str) -> tuple[str, str]:
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    ws_base = "ws" + base.removeprefix("http")
    return f"{base}/jobs/{job_id}", f"{ws_base}/jobs/{job_id}/ws"


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
    return create_model(
        f"{request_model.__name__}Body", __base__=(request_model, JobOptions)
    )


def _make_route(spec: OperationSpec) -> Any:
    op = spec.operation
    body_model = _body_model(op)
    option_fields = set(JobOptions.model_fields)

    async def submit_operation(
        body: body_model,  # type: ignore[valid-type]
        request: Request,
        response: Response,
        redis: RedisDep,
        settings: SettingsDep,
        api_key: ApiKeyDep,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> JobAccepted:
        # The body is both the operation's request and the job's options: validated once, used as both.
        options: JobOptions = body
        try:
            normalize_paths(body, settings.data_dir, spec.service)
        except PathRefused as exc:
            raise HTTPException(
                422, [{"loc": ["body", *exc.loc], "msg": exc.message, "type": "path_refused"}]
            ) from None
        check_callback(options.callback_url, settings)
        job_id = job_id_for(idempotency_key, api_key)
        try:
            created = await submit(
                redis,
                settings,
                op,
                body.model_dump(mode="json", by_alias=True, exclude=option_fields),  # type: ignore[attr-defined]
                options,
                job_id=job_id,
                request_id=request.state.request_id,
            )
        except IdempotencyConflict:
            raise HTTPException(409, "Idempotency-Key was already used with a different request") from None
        status_url, ws_url = job_urls(request, settings, job_id)
        if created:
            status = JobStatus.deferred if options.defer_by or options.defer_until else JobStatus.queued
        else:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
            view = await read_job(redis, job_id)
            status = view.status if view else JobStatus.queued
        return JobAccepted(job_id=job_id, status=status, status_url=status_url, ws_url=ws_url)

    submit_operation.__name__ = f"submit_{op.value}"
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
