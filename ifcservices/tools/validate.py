"""Validation of an IFC file against its schema: STEP syntax and header, every entity's attributes
(types, cardinalities, enumerations, inverses) and, with ``rules``, the schema's EXPRESS rules.

Stages, each with its share of the progress: syntax (``ifcopenshell.simple_spf``), then the model is
opened and checked by ``ifcopenshell.validate`` (instance by instance, so progress is real), then the
parser's own messages (bad enumeration literals, dangling references, wrong attribute counts), then the
rules (``ifcopenshell.express.rule_executor``). A file whose syntax is broken is a result, not a failed
job: ``valid`` is false and the issue names the line; the later stages are skipped, as ifcopenshell
would read such a file as something it is not.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.ifcopenshell_wrapper as wrapper
import ifcopenshell.validate

from contracts.paths import suffix_of
from contracts.requests import IfcValidateRequest
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput, ProcessingFailed
from ifcservices.ifcfiles import open_ifc
from ifcservices.progress import ProgressFn
from ifcservices.tools import validate_owners, validate_report
from ifcservices.tools.validate_issues import Collector
from ifcservices.tools.validate_log import IssueLog
from ifcservices.tools.validate_owners import owners
from ifcservices.tools.validate_syntax import check_is_step, entity_lines, syntax_issues

# Seconds per MiB the strict syntax parser takes (measured: 124 s for 33.6 MiB on one core), for its
# estimated progress: it is one call with no progress of its own.
_SYNTAX_SECONDS_PER_MIB = 3.7
_TICK = 0.5
_PROGRESS_EVERY = 500  # instances between two progress reports of the schema pass


@contextmanager
def _estimated(progress: ProgressFn, start: float, end: float, seconds: float, phase: str) -> Iterator[None]:
    """Progress from ``start`` towards ``end`` over an expected ``seconds`` while one long call runs,
    from a thread (the call holds no lock the thread needs: pure Python, the GIL is shared)."""
    progress(start, phase)
    stop = threading.Event()
    began = time.monotonic()

    def tick() -> None:
        while not stop.wait(_TICK):
            fraction = min(0.95, (time.monotonic() - began) / max(seconds, 1.0))
            progress(start + (end - start) * fraction, phase)

    ticker = threading.Thread(target=tick, name="validate-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()


def _instance_counter(progress: ProgressFn, total: int, start: float, end: float) -> Callable[[], None]:
    seen = 0

    def counted() -> None:
        nonlocal seen
        seen += 1
        if seen % _PROGRESS_EVERY == 0:
            progress(start + (end - start) * min(1.0, seen / max(total, 1)), f"checking {total} entities")

    return counted


# Where each stage of the rule executor starts, by the state it gives its logger.
_RULE_STAGES = {
    "global_rule": (74, "checking global rules"),
    "simpletype_rule": (76, "checking defined type rules"),
    "entity_rule": (82, "checking entity where-rules"),
}


def _stage_reporter(progress: ProgressFn) -> Callable[[str], None]:
    def stage(name: str) -> None:
        if name in _RULE_STAGES:
            progress(*_RULE_STAGES[name])

    return stage


def _rules_available() -> str | None:
    # The rule executor rewrites the compiled rules' asserts with pytest's machinery to say which part
    # of a rule failed; without pytest it cannot run at all.
    try:
        import _pytest.assertion  # noqa: F401
    except ImportError:
        return "ifcopenshell's EXPRESS rule executor needs pytest, which this service's environment lacks"
    return None


def _run_rules(model: ifcopenshell.file, log: IssueLog, relative: str) -> None:
    import ifcopenshell.express.rule_executor as rule_executor

    log.set_state("instance", None)
    log.set_state("attribute", None)
    try:
        rule_executor.run(model, log)  # type: ignore[arg-type]
    except Exception as exc:
        raise ProcessingFailed(
            f"the EXPRESS rules of {model.schema_identifier} could not be checked on {relative}: "
            f"{type(exc).__name__}: {exc}; rules: false checks the schema alone",
            status_code=422,
        ) from None


def _add_lines(collector: Collector, path: Path) -> None:
    """The line of each listed issue's entity; header issues get their header entity's line."""
    wanted = {i.entity_id for i in collector.issues if i.line is None and i.entity_id is not None}
    for group in collector.groups.values():
        wanted.update(int(e["entity"][1:]) for e in group.entities if e["line"] is None)
    lines, header = entity_lines(path, wanted)
    for issue in collector.issues:
        if issue.line is None and issue.entity_id is not None:
            issue.line = lines.get(issue.entity_id)
        elif issue.line is None and issue.check == "header" and issue.ifc_class:
            issue.line = header.get(issue.ifc_class.upper())
    for group in collector.groups.values():
        for entity in group.entities:
            if entity["line"] is None:
                entity["line"] = lines.get(int(entity["entity"][1:]))


def _add_owners(collector: Collector, model: ifcopenshell.file) -> None:
    """The products each issue's entity belongs to where it has no GlobalId (up to MAX_LOOKUPS entities)."""
    wanted = [i.entity_id for i in collector.issues if i.global_id is None and i.entity_id is not None]
    for group in collector.groups.values():
        wanted += [int(e["entity"][1:]) for e in group.entities if e["global_id"] is None]
    found = {entity: owners(model, entity) for entity in list(dict.fromkeys(wanted))[: validate_owners.MAX_LOOKUPS]}
    for issue in collector.issues:
        if issue.global_id is None and issue.entity_id is not None:
            issue.elements = found.get(issue.entity_id, [])
    for group in collector.groups.values():
        group.add_owners(found)


def _check_model(
    path: Path, request: IfcValidateRequest, collector: Collector, ctx: TaskContext, checks: dict[str, str],
) -> str:
    """Open the model, run the schema (and rule) checks and find the elements of entities without a
    GlobalId; the model's schema identifier."""
    # log_internal_cpp_errors reads the parser's log as JSON lines.
    wrapper.set_log_format_json()  # type: ignore[no-untyped-call]
    ctx.progress(36, "opening model")
    model = open_ifc(path, request.ifc_filename)
    total = len(model.entity_names())
    log = IssueLog(model, collector, _instance_counter(ctx.progress, total, 40, 70), _stage_reporter(ctx.progress))
    before = collector.total
    ctx.progress(40, "checking entities")
    ifcopenshell.validate.validate(model, log, express_rules=False)
    # Attribute values are parsed lazily: the parser's messages are complete only after the pass.
    ifcopenshell.validate.log_internal_cpp_errors(model, os.fspath(path), log)
    checks["schema"] = "passed" if collector.total == before else "failed"
    if request.rules:
        ctx.progress(72, "checking EXPRESS rules")
        before = collector.total
        _run_rules(model, log, request.ifc_filename)
        checks["rules"] = "passed" if collector.total == before else "failed"
    ctx.progress(88, "finding the elements of the issues")
    _add_owners(collector, model)
    return str(model.schema_identifier)


def run(request: IfcValidateRequest, ctx: TaskContext) -> dict[str, Any]:
    """Validate ``ifc_filename`` and write the report ``output_filename`` (.json, .html or .bcf)."""
    assert request.output_filename is not None  # the request model fills it in
    path = ctx.input(request.ifc_filename)
    check_is_step(path, request.ifc_filename)
    if request.rules and (missing := _rules_available()) is not None:
        raise BadInput(f"rules: {missing}; send rules: false to check the schema alone")
    collector = Collector(keep=validate_report.MAX_REPORT_ISSUES)
    checks = {"syntax": "passed", "schema": "skipped", "rules": "skipped" if request.rules else "not requested"}
    seconds: dict[str, float] = {}
    started = time.monotonic()
    expected = _SYNTAX_SECONDS_PER_MIB * path.stat().st_size / 1024**2
    with _estimated(ctx.progress, 1, 35, expected, "checking STEP syntax"):
        issues, readable = syntax_issues(path)
    for issue in issues:
        collector.add(issue)
    if issues:
        checks["syntax"] = "failed"
    seconds["syntax"] = round(time.monotonic() - started, 2)
    schema: str | None = None
    if readable:
        began = time.monotonic()
        schema = _check_model(path, request, collector, ctx, checks)
        seconds["schema_and_rules"] = round(time.monotonic() - began, 2)
    checks["header"] = "failed" if collector.checks["header"] else ("passed" if readable else "skipped")
    ctx.progress(90, "locating issues in the file")
    _add_lines(collector, path)
    outcome = validate_report.Outcome(request.ifc_filename, schema, collector, checks, seconds)
    report_type = suffix_of(request.output_filename).lower().lstrip(".")
    ctx.progress(95, f"writing {report_type} report")
    with ctx.output(request.output_filename) as output:
        extra = validate_report.write(outcome, output, report_type)
    seconds["total"] = round(time.monotonic() - started, 2)
    return {"output_files": ctx.output_files, "report_type": report_type, **validate_report.result(outcome), **extra}
