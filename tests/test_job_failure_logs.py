"""Expected job failures (a service's 4xx, bad input) are one WARNING line with the reason, no traceback."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from contracts.wire import ErrorInfo
from settings.logging import configure_logging
from store.serialization import JobError
from tests.conftest import TERMINAL, Behaviour, submit, until


def _failure_lines(lines: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """Every line about this job at WARNING or above (ours carry job_id; arq's name it in the text)."""
    return [
        e for e in lines
        if e.get("level") in ("warning", "error", "critical")
        and (e.get("job_id") == job_id or job_id in str(e.get("event", "")))
    ]


async def test_a_services_4xx_is_one_warning_line_with_the_reason_and_no_traceback(api, worker, stub):
    stub.will("/ifc2json", Behaviour(status=422, body={"error": {"type": "invalid_input",
                                                                 "message": "model.ifc is not an IFC file"}}))
    job_id = await submit(api, "/ifc2json", {"filename": "model.ifc", "output_filename": "m.json"})
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "failed"

    lines = _failure_lines(worker.log_lines(), job_id)
    assert len(lines) == 1, lines
    [line] = lines
    assert line["level"] == "warning" and line["event"] == "job.failed"
    assert line["reason"] == "model.ifc is not an IFC file" and line["status_code"] == 422
    assert "exception" not in line and "Traceback" not in json.dumps(line)


@pytest.fixture
def captured_log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The process's log as JSON lines in a buffer (configure_logging writes to sys.stderr)."""
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    configure_logging("INFO", json=True)
    return buffer


def _raise_and_log(exc: Exception) -> None:
    try:
        raise exc
    except Exception as caught:  # as arq's Worker.run_job does: logger.exception inside its except
        logging.getLogger("arq.worker").exception("%6.2fs ! %s failed, %s: %s", 0.1, "j1:ifcconvert",
                                                  type(caught).__name__, caught)


def test_arqs_error_line_is_dropped_for_a_job_error_and_kept_with_its_traceback_for_a_bug(captured_log):
    _raise_and_log(JobError(ErrorInfo(type="invalid_request", message="input_filename: missing")))
    assert captured_log.getvalue() == ""

    _raise_and_log(RuntimeError("a bug"))
    [line] = [json.loads(raw) for raw in captured_log.getvalue().splitlines()]
    assert line["level"] == "error" and line["logger"] == "arq.worker"
    assert "RuntimeError: a bug" in line["exception"] and "Traceback" in line["exception"]
