"""The child-process side of an operation: run one tool, leave its result or error in a file, exit.

Results go through a file rather than the pipe so that a result of any size comes back whole, and a
child that dies mid-write leaves no result at all (the service then reports a crash).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from contracts.operations import Operation
from contracts.paths import PathRole, path_fields
from contracts.requests import REQUEST_MODELS
from ifcservices import testhooks
from ifcservices.confine import resolve
from ifcservices.context import TaskContext
from ifcservices.errors import ServiceError, is_storage_full
from ifcservices.limits import apply_in_child, is_out_of_memory_error, memory_message
from ifcservices.progress import PipeProgress
from ifcservices.staging import list_staging_in
from ifcservices.tools import TOOLS, main_input

RESULT_FILE = "result.json"
ERROR_FILE = "error.json"


@dataclass(frozen=True, slots=True)
class ChildJob:
    """Everything a child needs, picklable: the request travels as its JSON form and is re-validated."""

    operation: str
    request: dict[str, Any]
    data_dir: str
    workdir: str
    threads: int
    # Limits of this child (``ifcservices.limits``): bytes of address space, seconds of CPU; 0 is none.
    memory_limit: int = 0
    cpu_limit: int = 0
    # Inputs pinned to a version other than what their path holds (local backend): path -> version file.
    pinned: dict[str, str] = field(default_factory=dict)
    # The geometry cache's folder when the settings name none ("": under the data directory).
    geometry_cache_dir: str = ""


def _finite(value: Any) -> Any:
    # Geometry can yield NaN or infinity, which JSON has no spelling for: they become null.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _log_failure(operation: str, subject: str) -> None:
    # One JSON line on stderr, like the service's own logs; the traceback stays in the logs.
    record = {
        "event": "tool failed",
        "level": "error",
        "logger": "ifcservices.child",
        "pid": os.getpid(),
        "operation": operation,
        "subject": subject,
        "exception": traceback.format_exc(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(record), file=sys.stderr, flush=True)


def _write_json(workdir: Path, name: str, payload: Any) -> None:
    temporary = workdir / f".{name}.partial"
    with temporary.open("w", encoding="utf-8") as handle:
        # Compact and single-line: the service embeds it as is in an NDJSON line.
        json.dump(_finite(payload), handle, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    os.replace(temporary, workdir / name)


def _silence_stdout() -> None:
    # ifcdiff and ifcopenshell print progress to stdout; service logs are not the place for it.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = open(os.devnull, "w")  # lives as long as the process


def _error(error_type: str, message: str, status_code: int) -> dict[str, Any]:
    return {"type": error_type, "message": message, "status_code": status_code}


def _out_of_memory(job: ChildJob, verb: str, subject: str) -> dict[str, Any]:
    if job.memory_limit > 0:
        # The model asks for more than a job may have: retrying will not help, hence 422.
        return _error("limit_exceeded", f"stopped {verb} {subject}: {memory_message(job.memory_limit)}", 422)
    return _error("crashed", f"ifcopenshell ran out of memory while {verb} {subject}", 500)


def child_main(job: ChildJob, conn: Connection) -> None:
    """Entry point of the child process (runs in a fork of the service's fork server)."""
    apply_in_child(job.memory_limit, job.cpu_limit)
    _silence_stdout()
    workdir = Path(job.workdir)
    list_staging_in(workdir)  # a kill skips our clean-up: the service removes what is listed there
    op = Operation(job.operation)
    tool = TOOLS[op]
    progress = PipeProgress(conn)
    ctx = TaskContext(
        data_dir=Path(job.data_dir), progress=progress, threads=job.threads,
        pinned={key: Path(path) for key, path in job.pinned.items()},
        geometry_cache_dir=Path(job.geometry_cache_dir) if job.geometry_cache_dir else None,
    )
    subject = job.operation
    try:
        request = REQUEST_MODELS[op].model_validate(job.request)
        subject = main_input(op, request)
        inputs = [resolve(ctx.data_dir, getattr(o, n)) for _l, r, o, n in path_fields(request) if r is PathRole.input]
        testhooks.before_task(inputs, progress)
        run = importlib.import_module(tool.module).run
        result: dict[str, Any] = run(request, ctx)
        result.setdefault("output_files", ctx.output_files)
        progress(100.0, "done")
        _write_json(workdir, RESULT_FILE, result)
    except ServiceError as exc:
        _write_json(workdir, ERROR_FILE, _error(exc.error_type, exc.message, exc.status_code))
    except MemoryError:
        _write_json(workdir, ERROR_FILE, _out_of_memory(job, tool.verb, subject))
    except Exception as exc:
        _log_failure(op.value, subject)
        if is_out_of_memory_error(exc):
            _write_json(workdir, ERROR_FILE, _out_of_memory(job, tool.verb, subject))
        elif is_storage_full(exc):  # a scratch or cache write outside an output: the disk, not the model
            message = f"storage full while {tool.verb} {subject}: {exc}"
            _write_json(workdir, ERROR_FILE, _error("storage_full", message, 507))
        else:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            message = f"{op.value} failed on {subject}: {detail}"
            _write_json(workdir, ERROR_FILE, _error("processing_failed", message, 500))
    finally:
        conn.close()
