"""A job as the RQ system's clients see it (``GET /jobs/{id}/status``): a second view of the one record.

The RQ system (ifcpipeline) answered ``{job_id, status, result, error, progress, created_at, started_at,
ended_at, execution_time_seconds}`` with RQ's status words, ``error`` a string, and ``result`` as its
workers returned it: ``success``, ``message``, ``storage``, ``output_path`` (an absolute path such as
``/output/csv/x.csv``) and each operation's own keys. Its clients, the n8n node first, poll until
``finished`` or ``failed`` and read ``result.output_path``. This module maps a ``JobView`` to that shape
and does nothing else: no I/O (the one input it cannot derive, an HTML test report's text, is passed in).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from store.job_view import JobStatus, JobView


class SeedStatus(StrEnum):
    """RQ's job status words (``rq.job.JobStatus``)."""

    queued = "queued"
    started = "started"
    deferred = "deferred"
    scheduled = "scheduled"
    finished = "finished"
    failed = "failed"
    stopped = "stopped"
    canceled = "canceled"


class SeedJobStatus(BaseModel):
    """ifcpipeline's ``JobStatusResponse``, field for field."""

    job_id: str
    status: SeedStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    progress: dict[str, Any] | None = None
    execution_time_seconds: float | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


def seed_status_word(view: JobView) -> SeedStatus:
    """RQ's word for the job's status.

    ``deferred`` (a later start: defer_by/defer_until, or a retry waiting for its time) is RQ's
    ``scheduled``, where RQ puts both; RQ's own ``deferred`` (waiting for a dependency) has no ifcflow
    counterpart. An abort is ``canceled`` before the job started and ``stopped`` after, as RQ's
    ``cancel`` and ``stop-job`` say.
    """
    match view.status:
        case JobStatus.queued:
            return SeedStatus.queued
        case JobStatus.deferred:
            return SeedStatus.scheduled
        case JobStatus.in_progress:
            return SeedStatus.started
        case JobStatus.complete:
            return SeedStatus.finished
        case JobStatus.failed:
            return SeedStatus.failed
        case JobStatus.aborted:
            return SeedStatus.stopped if view.started_at is not None else SeedStatus.canceled


def _main_output(result: dict[str, Any]) -> str | None:
    files = result.get("output_files")
    if isinstance(files, list) and files and isinstance(files[0], str):
        return "/" + files[0]  # the RQ system's absolute form; accepted back as an input
    return None


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | dict) else int(value or 0)


def _convert(result: dict[str, Any], view: JobView, output: str | None, seconds: float | None) -> dict[str, Any]:
    files = [f for f in result.get("output_files") or [] if isinstance(f, str)]
    args = view.arguments or {}
    log = args.get("log_file")
    return {
        "message": f"File converted successfully to {output}",
        "log_file": f"/{log}" if isinstance(log, str) and log in files else None,
        "stdout": "",
        "stderr": "",
        "execution_time": seconds,
        "input_size_bytes": result.get("input_size_bytes"),
        "output_size_bytes": result.get("size_bytes"),
    }


def _clash_document(result: dict[str, Any], view: JobView) -> list[dict[str, Any]]:
    """ifcclash's JSON report (a list of clash sets, their clashes keyed "<a>-<b>"), as the RQ worker
    returned it in ``result.result``, from ifcflow's per-set summaries and the request."""
    args = view.arguments or {}
    requested = {s.get("name"): s for s in args.get("clash_sets") or [] if isinstance(s, dict)}
    settings = {k: args.get(k) for k in ("tolerance", "mode", "check_all", "allow_touching", "clearance")}
    document = []
    for summary in result.get("clash_sets") or []:
        source = requested.get(summary.get("name"), {})
        entry: dict[str, Any] = {
            "name": summary.get("name"),
            "a": [dict(f, file="/" + str(f.get("file"))) for f in source.get("a") or []],
            "b": [dict(f, file="/" + str(f.get("file"))) for f in source.get("b") or []],
            **settings,
            "clashes": {f"{c.get('a_global_id')}-{c.get('b_global_id')}": c for c in summary.get("clashes") or []},
        }
        if "smart_groups" in summary:
            entry["smart_groups"] = summary["smart_groups"]
        document.append(entry)
    return document


def _clash(result: dict[str, Any], view: JobView, output: str | None, seconds: float | None) -> dict[str, Any]:
    return {"warning": False, "result": _clash_document(result, view), "clash_count": result.get("clash_count", 0)}


def _csv(result: dict[str, Any], view: JobView, output: str | None, seconds: float | None) -> dict[str, Any]:
    return {"message": f"Successfully converted to {str(result.get('format') or 'csv').upper()}"}


def _csv_import(result: dict[str, Any], view: JobView, output: str | None, seconds: float | None) -> dict[str, Any]:
    return {"message": "Data changes successfully imported to IFC model"}


def _tester(result: dict[str, Any], view: JobView, output: str | None, seconds: float | None) -> dict[str, Any]:
    passed, failed = int(result.get("passed") or 0), int(result.get("failed") or 0)
    return {
        "total_specifications": passed + failed,
        "passed_specifications": passed,
        "failed_specifications": failed,
    }


def _diff(result: dict[str, Any], view: JobView, output: str | None, seconds: float | None) -> dict[str, Any]:
    summary = {k: _count(result.get(f"{k}_count", result.get(k))) for k in ("added", "deleted", "changed")}
    return {"message": f"IFC diff completed. Results saved to {output}", "summary": summary}


def _json(result: dict[str, Any], view: JobView, output: str | None, seconds: float | None) -> dict[str, Any]:
    return {"message": "File converted successfully to JSON."}


def _qto(result: dict[str, Any], view: JobView, output: str | None, seconds: float | None) -> dict[str, Any]:
    return {"message": f"Quantities calculated and inserted. Results saved to {output}"}


_Extra = Callable[[dict[str, Any], JobView, "str | None", "float | None"], dict[str, Any]]
# Each operation's own keys, as its RQ worker's tasks.py returns them on the file system.
_OPERATION_KEYS: dict[str, _Extra] = {
    "ifcconvert": _convert,
    "ifcclash": _clash,
    "ifccsv": _csv,
    "ifccsv_import": _csv_import,
    "ifctester": _tester,
    "ifcdiff": _diff,
    "ifc2json": _json,
    "calculate_qtos": _qto,
}


def seed_result(view: JobView, report: str | None = None) -> dict[str, Any] | None:
    """A finished job's result as the RQ worker of its operation returned it: ifcflow's own keys, then
    ``success``, ``message``, ``storage``, ``output_path`` and the operation's keys over them."""
    if view.status is not JobStatus.complete or view.result is None:
        return None
    result = view.result
    output = _main_output(result)
    seconds = execution_seconds(view)
    seed: dict[str, Any] = {
        **result,
        "success": True,
        # An operation the RQ system's workers did not know (ifcpatch, download) keeps its own message.
        "message": result.get("message") or f"{view.operation} completed. Results saved to {output}",
        "storage": "filesystem",
        "output_path": output,
    }
    keys_of = _OPERATION_KEYS.get(view.operation or "")
    if keys_of is not None:
        seed.update(keys_of(result, view, output, seconds))
    if report is not None:
        seed["report"] = report
    return seed


def execution_seconds(view: JobView) -> float | None:
    if view.started_at is None or view.finished_at is None:
        return None
    return (view.finished_at - view.started_at).total_seconds()


def seed_view(view: JobView, report: str | None = None) -> SeedJobStatus:
    """The job in the RQ system's shape; ``report`` is the text of an HTML test report, which its
    tester returned in ``result.report``."""
    error = None
    if view.error is not None:
        error = f"{view.error.type}: {view.error.message}" if view.error.message else view.error.type
    return SeedJobStatus(
        job_id=view.job_id,
        status=seed_status_word(view),
        result=seed_result(view, report),
        error=error,
        progress=view.progress.model_dump() if view.progress is not None else None,
        execution_time_seconds=execution_seconds(view),
        created_at=view.enqueued_at,
        started_at=view.started_at,
        ended_at=view.finished_at,
    )
