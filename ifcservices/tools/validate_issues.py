"""Validation issues: one record per finding, naming the entity, its class and GlobalId, the attribute,
what was expected and what was found; and their counts by severity, check and group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_TEXT_LIMIT = 500  # characters of an expected or found value; a 10,000-point list says nothing more
_SAMPLE_ENTITIES = 200  # elements of one group the result names (the viewer highlights them)


def _clip(value: str | None) -> str | None:
    if value is None or len(value) <= _TEXT_LIMIT:
        return value
    return value[: _TEXT_LIMIT - 3] + "..."


@dataclass(slots=True)
class Issue:
    """One finding: ``check`` is its kind (syntax, header, required, type, enumeration, cardinality,
    inverse, reference, unique, rule, ...), ``rule`` the EXPRESS rule's name where one was broken."""

    severity: str
    check: str
    message: str
    entity_id: int | None = None
    ifc_class: str | None = None
    global_id: str | None = None
    attribute: str | None = None
    rule: str | None = None
    expected: str | None = None
    found: str | None = None
    line: int | None = None
    column: int | None = None
    # Without a GlobalId of its own: the products the entity belongs to (validate_owners).
    elements: list[str] = field(default_factory=list)

    @property
    def group(self) -> str:
        """Issues of one kind: the rule broken, or the check on one class's attribute."""
        where = ".".join(part for part in (self.ifc_class, self.attribute) if part)
        if self.rule:
            return f"{self.rule} on {self.ifc_class}" if self.ifc_class and not self.rule.startswith(
                f"{self.ifc_class}.") else self.rule
        return f"{self.check}: {where}" if where else self.check

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "check": self.check,
            "rule": self.rule,
            "message": self.message,
            "entity": f"#{self.entity_id}" if self.entity_id is not None else None,
            "ifc_class": self.ifc_class,
            "global_id": self.global_id,
            "attribute": self.attribute,
            "expected": _clip(self.expected),
            "found": _clip(self.found),
            "line": self.line,
            "column": self.column,
            "elements": self.elements,
        }


@dataclass
class Group:
    """Every issue of one kind, counted whole however many issues the report keeps."""

    key: str
    check: str
    severity: str
    message: str
    rule: str | None
    ifc_class: str | None
    attribute: str | None
    count: int = 0
    entities: list[dict[str, Any]] = field(default_factory=list)
    global_ids: set[str] = field(default_factory=set)

    def add(self, issue: Issue) -> None:
        self.count += 1
        if issue.severity == "error":
            self.severity = "error"
        if len(self.entities) < _SAMPLE_ENTITIES and issue.entity_id is not None:
            self.entities.append({"entity": f"#{issue.entity_id}", "global_id": issue.global_id,
                                  "ifc_class": issue.ifc_class, "line": issue.line, "elements": []})
            if issue.global_id:
                self.global_ids.add(issue.global_id)

    def add_owners(self, owners: dict[int, list[str]]) -> None:
        """The elements of the sampled entities without a GlobalId: the group shows them on the model."""
        for entity in self.entities:
            if entity["global_id"] is None:
                entity["elements"] = owners.get(int(entity["entity"][1:]), [])
                self.global_ids.update(entity["elements"])


class Collector:
    """Issues as they are found: the first ``keep`` in full, every one counted by severity and group."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.issues: list[Issue] = []
        self.total = 0
        self.severities: Counter[str] = Counter()
        self.checks: Counter[str] = Counter()
        self.groups: dict[str, Group] = {}

    def add(self, issue: Issue) -> None:
        self.total += 1
        self.severities[issue.severity] += 1
        self.checks[issue.check] += 1
        if len(self.issues) < self.keep:
            self.issues.append(issue)
        key = issue.group
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, issue.check, issue.severity, issue.message, issue.rule,
                                             issue.ifc_class, issue.attribute)
        group.add(issue)

    @property
    def truncated(self) -> bool:
        return self.total > len(self.issues)
