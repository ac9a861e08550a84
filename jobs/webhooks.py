"""Delivering webhooks: the final status, signed, POSTed to the callback URL, retried on failure."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import aiohttp
import structlog
from arq import Retry

from contracts.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    CallbackRefused,
    check_callback_url,
    sign,
)
from jobs.backoff import retry_delay
from jobs.context import WorkerContext
from store import job_store, keys
from store.job_view import view_of
from workflows.engine import view as workflow_view

log = structlog.get_logger("jobs.webhooks")
_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)


async def _payload(ctx: WorkerContext, kind: str, target_id: str) -> tuple[str | None, dict[str, Any] | None]:
    redis = ctx["redis"]
    if kind == "workflow":
        url = await redis.hget(keys.workflow(target_id), "callback_url")
        return (url.decode() if url else None), await workflow_view(redis, target_id)
    record = await job_store.record_of(redis, target_id)
    job = view_of(target_id, record)
    return record.get("callback_url") or None, (job.model_dump(mode="json") if job else None)


async def deliver_webhook(ctx: WorkerContext, *, kind: str, target_id: str) -> dict[str, Any]:
    """POST ``{event, data}`` to the job's or workflow's callback URL; retried with backoff until a 2xx."""
    settings, attempt = ctx["settings"], ctx["job_try"]
    url, data = await _payload(ctx, kind, target_id)
    if not url or data is None or settings.webhook_secret is None:
        return {"delivered": False, "reason": "nothing to deliver"}
    try:
        check_callback_url(url, settings.callback_allowed_hosts)  # the allowlist may have shrunk since
    except CallbackRefused as exc:
        log.warning("webhook.refused", target_id=target_id, reason=str(exc))
        return {"delivered": False, "reason": str(exc)}
    event = f"{kind}.{data['status']}"
    body = json.dumps({"event": event, "data": data}, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: event,
        DELIVERY_HEADER: ctx["job_id"],
        SIGNATURE_HEADER: sign(settings.webhook_secret.get_secret_value().encode(), body),
        "User-Agent": "ifcflow-webhook/1",
        "X-Request-ID": uuid.uuid4().hex,
    }
    started = time.perf_counter()
    try:
        async with ctx["http"].post(url, data=body, headers=headers, timeout=_TIMEOUT, allow_redirects=False) as resp:
            status: int | str = resp.status
            ok = 200 <= resp.status < 300
    except (aiohttp.ClientError, TimeoutError) as exc:
        status, ok = type(exc).__name__, False
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    if ok:
        log.info("webhook.delivered", target_id=target_id, webhook_event=event, attempt=attempt,
                 duration_ms=duration_ms)
        return {"delivered": True, "status": status, "attempt": attempt}
    if attempt >= settings.webhook_max_tries:
        log.warning("webhook.failed", target_id=target_id, webhook_event=event, attempt=attempt, status=status)
        return {"delivered": False, "status": status, "attempt": attempt}
    delay = retry_delay(attempt, settings.retry_backoff, settings.retry_backoff_max)
    log.info("webhook.retrying", target_id=target_id, attempt=attempt, status=status, delay_s=round(delay, 2))
    raise Retry(defer=delay)
