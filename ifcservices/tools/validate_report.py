"""A validation's report (JSON, HTML or BCF, by the output's extension) and its job result.

The report lists every issue up to a cap, with every issue counted; the job result, which lives in
Redis and is read by the dashboard and the viewer, carries the counts and the groups of issues (by rule,
or by check, class and attribute) with the elements each names, bounded so that a model with a million
broken values still has a small result.
"""

from __future__ import annotations

import html
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ifcservices.tools.validate_issues import Collector, Group, Issue

# Issues a report lists in full (every one is counted).
MAX_REPORT_ISSUES = 10_000
# Groups and elements per group in the job result; BCF topics per report.
MAX_RESULT_GROUPS = 100
MAX_RESULT_ENTITIES = 20
MAX_BCF_TOPICS = 1_000
# Namespace of the BCF topic GUIDs: uuid5 of the file's name, the element's GlobalId and the issue's group.
TOPIC_NAMESPACE = uuid.UUID("6f0c1f1e-2b0e-5c4a-9a57-0b6f3c7e1d21")


@dataclass
class Outcome:
    """What one validation found, with the state of each stage (passed, failed, skipped, not requested)."""

    file: str
    schema: str | None
    collector: Collector
    checks: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.collector.severities["error"] == 0

    def counts(self) -> dict[str, int]:
        return {"error": self.collector.severities["error"], "warning": self.collector.severities["warning"]}

    def groups(self) -> list[Group]:
        return sorted(self.collector.groups.values(), key=lambda g: (g.severity != "error", -g.count, g.key))


def _group_row(group: Group, entities: int | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": group.key, "check": group.check, "rule": group.rule, "severity": group.severity,
        "ifc_class": group.ifc_class, "attribute": group.attribute, "message": group.message, "count": group.count,
    }
    if entities is not None:
        row["global_ids"] = sorted(group.global_ids)
        row["entities"] = group.entities[:entities]
    return row


def document(outcome: Outcome) -> dict[str, Any]:
    """The JSON report."""
    collector = outcome.collector
    return {
        "file": outcome.file,
        "schema": outcome.schema,
        "valid": outcome.valid,
        "checks": outcome.checks,
        "counts": outcome.counts(),
        "issue_count": collector.total,
        "issues_listed": len(collector.issues),
        "truncated": collector.truncated,
        "by_check": dict(collector.checks),
        "groups": [_group_row(g, None) for g in outcome.groups()],
        "issues": [issue.as_dict() for issue in collector.issues],
        "seconds": outcome.seconds,
    }


_STYLE = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
.error{color:#b71c1c}.warning{color:#a15c00}.valid{color:#1b5e20}code{white-space:pre-wrap}h2{margin-top:1.6em}"""


def _cell(value: Any) -> str:
    return f"<td><code>{html.escape(str(value))}</code></td>" if value not in (None, "") else "<td></td>"


def html_page(outcome: Outcome) -> str:
    """The HTML report: a summary, then the issues under their groups."""
    collector = outcome.collector
    verdict = "valid" if outcome.valid else "not valid"
    counts = outcome.counts()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Validation of {html.escape(outcome.file)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(outcome.file)}: <span class='{'valid' if outcome.valid else 'error'}'>"
        f"{verdict}</span></h1>",
        f"<p>Schema {html.escape(outcome.schema or 'unknown')}; "
        f"{counts['error']} errors, {counts['warning']} warnings; ",
        ", ".join(f"{html.escape(k)} {html.escape(v)}" for k, v in outcome.checks.items()) + ".</p>",
    ]
    if collector.truncated:
        parts.append(f"<p>The first {len(collector.issues)} of {collector.total} issues are listed.</p>")
    by_group: dict[str, list[Issue]] = {}
    for issue in collector.issues:
        by_group.setdefault(issue.group, []).append(issue)
    for group in outcome.groups():
        issues = by_group.get(group.key, [])
        parts.append(f"<h2 class='{group.severity}'>{html.escape(group.key)} ({group.count})</h2>")
        parts.append("<table><tr><th>line</th><th>entity</th><th>class</th><th>GlobalId</th><th>attribute</th>"
                     "<th>message</th><th>expected</th><th>found</th></tr>")
        for issue in issues:
            row = issue.as_dict()
            parts.append("<tr>" + "".join(_cell(row[k]) for k in (
                "line", "entity", "ifc_class", "global_id", "attribute", "message", "expected", "found")) + "</tr>")
        parts.append("</table>")
    if not collector.total:
        parts.append("<p class='valid'>No issues found.</p>")
    parts.append("</body></html>")
    return "".join(parts)


def topic_guid(ifc_filename: str, global_id: str, group: str) -> str:
    """A topic's GUID, the same in every rerun on a file of that name while the issue remains."""
    return str(uuid.uuid5(TOPIC_NAMESPACE, f"{PurePosixPath(ifc_filename).name}|{global_id}|{group}"))


def bcf_topics(outcome: Outcome) -> tuple[list[Any], int]:
    """One topic per element (by GlobalId) and kind of issue, up to ``MAX_BCF_TOPICS``; and how many
    more there were. An entity without a GlobalId is filed under the element it belongs to; one that
    belongs to none (a shared point, the owner history) has no topic."""
    from ifcservices.tools.bcf_topics import BcfTopic  # bcf-client is loaded only for a .bcf report

    by_topic: dict[tuple[str, str], list[Issue]] = {}
    for issue in outcome.collector.issues:
        # An entity without a GlobalId is filed under the first element it belongs to, if any.
        target = issue.global_id or (issue.elements[0] if issue.elements else None)
        if target:
            by_topic.setdefault((target, issue.group), []).append(issue)
    topics = []
    for (global_id, group), issues in list(by_topic.items())[:MAX_BCF_TOPICS]:
        first = issues[0]
        lines = "\n".join(
            f"line {i.line}: #{i.entity_id} {i.ifc_class}: {i.message}"
            + (f" (expected {i.expected}; found {i.found})" if i.expected else "")
            for i in issues[:20]
        )
        topics.append(BcfTopic(
            guid=topic_guid(outcome.file, global_id, group),
            title=f"{global_id}: {group}"[:250],
            description=lines,
            status="Open",
            topic_type="Error" if any(i.severity == "error" for i in issues) else "Warning",
            global_ids=(global_id,),
            labels=tuple(sorted({first.check, *([first.rule] if first.rule else [])})),
        ))
    return topics, max(0, len(by_topic) - MAX_BCF_TOPICS)


def write(outcome: Outcome, path: Path, report_type: str) -> dict[str, Any]:
    """Write the report at ``path``; what the result says about it (BCF topics written and left out)."""
    if report_type == "html":
        path.write_text(html_page(outcome), encoding="utf-8")
        return {}
    if report_type == "bcf":
        from ifcservices.tools.bcf_topics import write_bcf

        topics, left_out = bcf_topics(outcome)
        write_bcf(path, topics, project_name=f"ifcflow validation of {PurePosixPath(outcome.file).name}",
                  ifc_filename=PurePosixPath(outcome.file).name)
        return {"bcf_topics": len(topics), "bcf_topics_left_out": left_out}
    path.write_text(json.dumps(document(outcome), ensure_ascii=False), encoding="utf-8")
    return {}


def result(outcome: Outcome) -> dict[str, Any]:
    """The job's result: verdict, counts, and the biggest groups with the elements they name."""
    collector = outcome.collector
    groups = outcome.groups()
    return {
        "valid": outcome.valid,
        "schema": outcome.schema,
        "checks": outcome.checks,
        "counts": outcome.counts(),
        "errors": collector.severities["error"],
        "warnings": collector.severities["warning"],
        "issue_count": collector.total,
        "issues_listed": len(collector.issues),
        "truncated": collector.truncated,
        "by_check": dict(collector.checks),
        "groups": [_group_row(g, MAX_RESULT_ENTITIES) for g in groups[:MAX_RESULT_GROUPS]],
        "groups_left_out": max(0, len(groups) - MAX_RESULT_GROUPS),
        "seconds": outcome.seconds,
    }
