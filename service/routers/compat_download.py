"""``POST /download-from-url``: ifcpipeline's download of a URL into ``uploads/``, as a job.

ifcpipeline fetched inside the request and answered ``{message, file_path, original_filename, ...}``;
its n8n node chains that answer's ``file_path``. Here the URL is checked at once (form, host allowlist,
every address its host resolves to: a 422 naming ``url`` for each refusal, nothing queued), then
fetched by a ``download_from_url`` job on the ifcpatch service (progress, retries, live status like any
job), and the request waits for the job's end (``IFCFLOW_DOWNLOAD_WAIT`` seconds, or ``?wait=``) to
answer as ifcpipeline did, with the job's id beside. A job that outlasts the wait is answered 202 with
its id and the ``file_path`` it will write.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from access.grants import Caller
from access.scope import client_paths
from contracts.compat_requests import DownloadUrlRequest
from contracts.fetch_rules import FetchRefused, check_addresses, check_url, parse_networks
from contracts.operations import Operation
from service.deps import SubmitKeyDep
from service.routers.compat_submit import body_model, job_fields, submit, wait_for_end
from service.routers.operations import IdempotencyKeyHeader
from settings import Settings
from store.job_view import JobStatus, JobView

router = APIRouter(tags=["files (ifcpipeline)"])

OP = Operation.download_from_url
DownloadBody = body_model(OP)
_RESOLVE_TIMEOUT_S = 10.0
# The service's status for a failed download, as this route answers it: a refusal stays 422, a file
# over the limit 413, anything upstream (its 4xx, 5xx, a lost connection) is a bad gateway.
_FAILED_STATUS = {422: 422, 413: 413}


def _refused(field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "msg": message, "type": "download_refused"}])


async def check_download(body: DownloadUrlRequest, settings: Settings) -> str:
    """The name the file will get in ``uploads/``, once the URL passed every check; 422 otherwise."""
    try:
        target = check_url(body.url, settings.download_allowed_hosts)
    except FetchRefused as exc:
        raise _refused("url", str(exc)) from None
    try:
        name = body.stored_name()
    except ValueError as exc:
        raise _refused("output_filename", f"the URL gives no usable file name ({exc}); send output_filename") from None
    networks = parse_networks(settings.download_allowed_networks)
    try:
        try:
            ipaddress.ip_address(target.host)
            addresses = [target.host]
        except ValueError:
            addresses = await _resolve(target.host, target.port)
        check_addresses(target.host, addresses, networks)
    except FetchRefused as exc:
        raise _refused("url", str(exc)) from None
    return name


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(_RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, TimeoutError) as exc:
        raise FetchRefused(f"host {host!r} does not resolve ({type(exc).__name__})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _finished(view: JobView, job: dict[str, Any], caller: Caller) -> Response:
    if view.status is JobStatus.complete and view.result is not None:
        # Named as the caller names its files (relative to its project), as GET /jobs/{id} shows them.
        result = {k: client_paths(v, caller.project) for k, v in view.result.items() if k != "output_files"}
        return JSONResponse({**result, **job, "status": "finished"})
    error = view.error
    code = _FAILED_STATUS.get(error.status_code or 0, 502) if error is not None else 502
    message = error.message if error is not None else f"the download job was {view.status.value}"
    return JSONResponse({"detail": message, **job, "status": view.status.value}, status_code=code)


@router.post("/download-from-url", status_code=200, summary="Download a URL into uploads/ (a job)", responses={
    202: {"description": "still downloading after the wait: the job's id and the file_path it will write"},
    413: {"description": "the file is larger than IFCFLOW_DOWNLOAD_MAX_BYTES"},
    502: {"description": "the URL's server refused or failed (its status in detail)"},
})
async def download_from_url(
    request: Request,
    body: Annotated[BaseModel, Body()],
    api_key: SubmitKeyDep,
    idempotency_key: IdempotencyKeyHeader = None,
    wait: Annotated[float | None, Query(ge=0, le=3600, description="seconds to wait for the file; "
                                                                      "default IFCFLOW_DOWNLOAD_WAIT")] = None,
) -> Response:
    """Check the URL, queue its download and answer once the file is in ``uploads/`` (200, ifcpipeline's
    fields plus ``job_id``), or 202 with the job's id when it takes longer than the wait."""
    settings = cast(Settings, request.state.settings)
    name = await check_download(cast(DownloadUrlRequest, body), settings)
    answer = await submit(OP, request, body, api_key, idempotency_key)
    job = job_fields(answer)
    timeout = settings.download_wait if wait is None else wait
    view = await wait_for_end(request, job["job_id"], timeout) if timeout > 0 else None
    if view is not None:
        return _finished(view, job, api_key)
    pending = {"message": f"Downloading as {name}; follow the job", "file_path": f"/uploads/{name}",
               "original_filename": name, "storage_basename": name}
    return JSONResponse({**pending, **job}, status_code=202)


# FastAPI validates and documents the body by its annotation: the operation's own body model.
download_from_url.__annotations__["body"] = Annotated[DownloadBody, Body()]
