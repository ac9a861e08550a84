"""One route per operation: validate, check paths, enqueue, answer 202 with the job id."""

from collections.abc import Callable, Coroutine
from functools import lru_cache, partial
from typing import Any, cast

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError, create_model

from contracts.files import PathRefused, normalize_paths
from contracts.operations import OPERATIONS, Operation, OperationSpec
from contracts.requests import REQUEST_MODELS
from contracts.webhooks import CallbackRefused, check_callback_url
from service.deps import API_KEY_SECURITY, check_api_key, presented_key
from service.job_control import IDEMPOTENCY_KEY_MAX, job_id_for, submit
from service.schemas import JobAccepted, JobOptions
from settings import Settings
from store.enqueue import IdempotencyConflict
from store.job_view import JobStatus, read_job

router = APIRouter(tags=["operations"])


class DirectRoute(APIRoute):
    """A documented route whose endpoint takes the ``Request`` and returns the ``Response`` itself.

    ``get_route_handler`` is FastAPI's hook for custom routes; this one hands requests straight to the
    endpoint, skipping the parameter solving and response validation it has no use for.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)


@lru_cache(maxsize=64)
def _bases(public_url: str) -> tuple[str, str]:
    base = public_url.rstrip("/")
    return base, "ws" + base.removeprefix("http")


def job_urls(request: Request, settings: Settings, job_id: str) -> tuple[str, str]:
    """The job's status and WebSocket URLs, under the public URL or the one the client used."""
    # request.base_url parses a URL per request; the few bases a gateway sees are computed once each.
    http, ws = _bases(settings.public_url or _request_base(request))
    return f"{http}/jobs/{job_id}", f"{ws}/jobs/{job_id}/ws"


def accepted(
    request: Request, settings: Settings, job_id: str, status: JobStatus, code: int = 202,
    headers: dict[str, str] | None = None,
) -> Response:
    """A ``JobAccepted`` answer (encoded with orjson: this is every submit's answer)."""
    status_url, ws_url = job_urls(request, settings, job_id)
    body = orjson.dumps({"job_id": job_id, "status": status, "status_url": status_url, "ws_url": ws_url})
    return Response(body, status_code=code, headers=headers, media_type="application/json")


def _request_base(request: Request) -> str:
    scope = request.scope
    host = request.headers.get("host")
    if host is None:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


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


# One model per operation: the operation's request and the job's options, validated together.
BODY_MODELS: dict[Operation, type[BaseModel]] = {op: _body_model(op) for op in Operation}


def parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    """The validated body, or FastAPI's own 422 (each error's ``loc`` starting with "body")."""
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        for details in exc.errors(include_url=False):
            error: dict[str, Any] = {**details, "loc": ("body", *details["loc"])}
            if isinstance(error.get("input"), bytes):  # the raw body itself (not JSON): not echoed
                error.pop("input")
            errors.append(error)
        raise RequestValidationError(errors) from None


def idempotency_key_of(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise RequestValidationError([{
            "type": "string_too_long", "loc": ("header", "idempotency-key"), "input": key[:64] + "...",
            "msg": f"String should have at most {IDEMPOTENCY_KEY_MAX} characters",
            "ctx": {"max_length": IDEMPOTENCY_KEY_MAX},
        }])
    return key


def _make_route(spec: OperationSpec) -> Any:
    op = spec.operation
    body_model = BODY_MODELS[op]
    option_fields = set(JobOptions.model_fields)

    # The busiest route, so it reads headers and body itself: FastAPI's dependency solving and body
    # handling cost more than everything else a submit does but the Redis call (docs/performance.md).
    # What FastAPI would document from the parameters is declared in its OpenAPI entry instead.
    async def submit_operation(request: Request) -> Response:
        settings: Settings = request.state.settings
        api_key = check_api_key(presented_key(request), settings)
        idempotency_key = idempotency_key_of(request)
        body = parse_body(body_model, await request.body())
        # The body is both the operation's request and the job's options: validated once, used as both.
        options = cast(JobOptions, body)
        try:
            normalize_paths(body, settings.data_dir, spec.service)
        except PathRefused as exc:
            raise HTTPException(
                422, [{"loc": ["body", *exc.loc], "msg": exc.message, "type": "path_refused"}]
            ) from None
        check_callback(options.callback_url, settings)
        job_id = job_id_for(idempotency_key, api_key)
        status = JobStatus.deferred if options.defer_by or options.defer_until else JobStatus.queued
        try:
            created, answer = await submit(
                request.state.submitter,
                settings,
                op,
                body.model_dump(mode="json", by_alias=True, exclude=option_fields),
                options,
                job_id=job_id,
                request_id=request.state.request_id,
                fresh_id=not idempotency_key,
                meanwhile=partial(accepted, request, settings, job_id, status),  # made while Redis works
            )
        except IdempotencyConflict:
            raise HTTPException(409, "Idempotency-Key was already used with a different request") from None
        if created:
            return answer
        view = await read_job(request.state.redis, job_id)
        status = view.status if view else JobStatus.queued
        return accepted(request, settings, job_id, status, 200, {"Idempotent-Replayed": "true"})

    submit_operation.__name__ = f"submit_{op.value}"
    return submit_operation


def _openapi_extra(op: Operation) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{BODY_MODELS[op].__name__}"}}},
        },
        "parameters": [{
            "name": "idempotency-key", "in": "header", "required": False,
            "description": "the same key with the same body returns the first job instead of a new one",
            "schema": {"anyOf": [{"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX}, {"type": "null"}],
                       "title": "Idempotency-Key"},
        }],
        "security": API_KEY_SECURITY,
    }


def document_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the operations' body models (and the models they use) to an OpenAPI schema's components."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in BODY_MODELS.values():
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in model_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = model_schema
    return schema


for _spec in OPERATIONS.values():
    router.add_api_route(
        _spec.path,
        _make_route(_spec),
        methods=["POST"],
        status_code=202,
        response_model=JobAccepted,
        summary=_spec.summary,
        openapi_extra=_openapi_extra(_spec.operation),
        route_class_override=DirectRoute,
        responses={
            200: {"description": "replay of an earlier request with the same Idempotency-Key"},
            422: {"description": "Validation Error",
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}},
        },
    )
