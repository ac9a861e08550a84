"""The validator's log: what ``ifcopenshell.validate`` and its EXPRESS rule executor log, made into ``Issue``
records naming the entity, its class and GlobalId, the attribute, what was expected and what was found.

ifcopenshell logs each finding as a message and a state (the instance being checked, the attribute);
the messages are its own wording, so their kinds are told apart here by their fixed phrases, and the
expected side is read from the schema rather than from the text where the schema says it better.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import ifcopenshell
import ifcopenshell.ifcopenshell_wrapper as wrapper
import ifcopenshell.validate

from ifcservices.tools.validate_issues import Collector, Issue

_ENUM_ITEMS_SHOWN = 30

_LINE_ENTITY = re.compile(r"#(\d+)\s*=\s*([A-Za-z0-9_]+)")
_CPP_REFERENCE = re.compile(r"Instance reference #(\d+) used by instance #(\d+) at attribute index (\d+) not found")
_CPP_ENUM = re.compile(r"An enumeration literal '([^']*)' is not valid for type '(\w+)'")
_CPP_UNKNOWN = re.compile(r"Entity with name '([^']*)' not found in schema '(\w+)'")
_CPP_COUNT = re.compile(r"Expected (\d+) attribute values, found (\d+)")
_INDETERMINATE = re.compile(r"<indeterminate_type object at 0x[0-9a-fA-F]+>")
_RULE_NAME = re.compile(r"Rule (\S+):\n\s*(.+)")
_HEADER = re.compile(
    r"For instance:\n\s*(FILE_\w+)\(.*?Attribute '(\w+)' has invalid type:\n"
    r"\s*Expected: (.*)\n\s*Current value type: (.*)",
    re.S,
)


def _is(value: Any, kind: Any) -> bool:
    """``isinstance`` without narrowing: ifcopenshell's SWIG classes are untyped, their values stay Any."""
    return isinstance(value, kind)


def type_text(declared: Any) -> str:
    """An attribute type as EXPRESS spells it: ``LIST [1:3] OF IfcLengthMeasure``, ``IfcLabel``."""
    if _is(declared, wrapper.named_type):
        return str(declared.declared_type().name())
    if _is(declared, wrapper.aggregation_type):
        upper = "?" if declared.bound2() == -1 else declared.bound2()
        kind = declared.type_of_aggregation_string().upper()
        return f"{kind} [{declared.bound1()}:{upper}] OF {type_text(declared.type_of_element())}"
    if _is(declared, wrapper.simple_type):
        return str(declared.declared_type()).upper()
    name = getattr(declared, "name", None)
    return str(name()) if callable(name) else str(declared)


def _resolved(declared: Any) -> Any:
    """The type under named and defined types (IfcPositiveLengthMeasure: REAL), selects and entities kept."""
    while _is(declared, (wrapper.named_type, wrapper.type_declaration)):
        declared = declared.declared_type()
    return declared


def _enum_items(enum: Any) -> str:
    items = [f".{item}." for item in enum.enumeration_items()]
    more = f", ... ({len(items)} in all)" if len(items) > _ENUM_ITEMS_SHOWN else ""
    return f"one of {enum.name()}: {', '.join(items[:_ENUM_ITEMS_SHOWN])}{more}"


def _short(value: Any) -> str:
    if _is(value, ifcopenshell.entity_instance):
        return f"#{value.id()}={value.is_a()}" if value.id() else str(value)
    if isinstance(value, tuple) and len(value) > 8:
        return f"({', '.join(_short(v) for v in value[:8])}, ... {len(value)} items)"
    if isinstance(value, tuple):
        return f"({', '.join(_short(v) for v in value)})"
    return repr(value)


class IssueLog(ifcopenshell.validate.json_logger):
    """The logger ``ifcopenshell.validate`` and the rule executor write to (its json_logger interface),
    turning each statement into an ``Issue`` as it comes; ``on_instance`` is called for every instance
    the schema pass sets out to check, ``on_stage`` when a stage of the rules begins (their progress)."""

    def __init__(
        self, model: ifcopenshell.file, collector: Collector, on_instance: Callable[[], None],
        on_stage: Callable[[str], None],
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.model = model
        self.schema = wrapper.schema_by_name(model.schema_identifier)
        self.collector = collector
        self._on_instance = on_instance
        self._on_stage = on_stage

    def set_state(self, key: Any, value: Any) -> None:
        if key == "type" and value != self.state.get("type"):
            self._on_stage(str(value))
        super().set_state(key, value)
        if key == "instance" and self.state.get("type") == "schema" and value is not None:
            self._on_instance()

    def log(self, level: Any, message: Any, *args: Any) -> None:
        # json_logger always applies "%": a rule's text quoting a model string with "%" in it would fail.
        text = str(message) % args if args else str(message)
        self.collector.add(self.issue(str(level), text, dict(self.state)))

    # ---------------------------------------------------------------------------------------------
    # One statement to one issue

    def issue(self, level: str, text: str, state: dict[str, Any]) -> Issue:
        severity = "error" if level in ("error", "critical") else "warning"
        kind = state.get("type") or "schema"
        issue = Issue(severity=severity, check="schema", message=text.strip().splitlines()[0] if text.strip() else "")
        self._entity(issue, state.get("instance"))
        if kind.endswith("_rule"):
            self._rule(issue, text, state.get("attribute"), level)
        else:
            self._schema(issue, text, state.get("attribute"))
        return issue

    def _entity(self, issue: Issue, instance: Any) -> None:
        if isinstance(instance, str):
            # Parser messages carry the line of the file, not an instance: read its id and class.
            match = _LINE_ENTITY.search(instance)
            if match is None:
                return
            issue.entity_id = int(match[1])
            issue.ifc_class = self._class_name(match[2])
            try:
                instance = self.model.by_id(issue.entity_id)
            except RuntimeError:
                return
        if not _is(instance, ifcopenshell.entity_instance) or not instance.id():
            return
        issue.entity_id = instance.id()
        issue.ifc_class = instance.is_a()
        if instance.is_a("IfcRoot"):
            try:
                global_id = instance.GlobalId
            except (RuntimeError, AttributeError, ValueError):
                return  # unreadable: its own issue says so
            issue.global_id = global_id if isinstance(global_id, str) else None

    def _class_name(self, name: str) -> str:
        try:
            return str(self.schema.declaration_by_name(name).name())
        except (RuntimeError, IndexError):
            return name

    def _attribute(self, ifc_class: str | None, name: str) -> Any:
        if not ifc_class:
            return None
        try:
            entity = self.schema.declaration_by_name(ifc_class).as_entity()
        except (RuntimeError, IndexError):
            return None
        if entity is None:
            return None
        attributes: tuple[Any, ...] = (*entity.all_attributes(), *entity.all_inverse_attributes())
        for attribute in attributes:
            if attribute.name() == name:
                return attribute
        return None

    def _schema(self, issue: Issue, text: str, attribute: str | None) -> None:
        if attribute:
            issue.attribute = attribute.rpartition(".")[2]
        if text == "Attribute not optional":
            issue.check, issue.expected, issue.found = "required", "a value", "$ (not set)"
            issue.message = f"{issue.attribute} is required but not set"
        elif text == "Invalid attribute value":
            issue.check, issue.found = "type", "a value that cannot be read"
            issue.expected = self._declared_text(issue)
            issue.message = f"{issue.attribute}: the value cannot be read as {issue.expected}"
        elif text == "Attribute is derived in subtype":
            issue.check, issue.expected, issue.found = "derived", "* (derived)", "a value"
            issue.message = f"{issue.attribute} is derived in {issue.ifc_class} and must be *"
        elif text.startswith("With attribute:"):
            self._invalid_value(issue)
        elif text.startswith("With inverse:"):
            self._inverse(issue, text)
        elif text.startswith("Entity ") and text.endswith(" is abstract"):
            issue.check, issue.message = "abstract", text
        elif "Rule IfcRoot.UR1" in text or "base64 validation" in text or "Rule IfcApplication." in text:
            self._unique(issue, text)
        elif (header := _HEADER.search(text)) is not None:
            issue.check, issue.ifc_class, issue.attribute = "header", header[1], header[2]
            issue.expected, issue.found = header[3].strip(), header[4].strip()
            issue.entity_id = issue.global_id = None
            issue.message = f"{header[1]}.{header[2]} has an invalid type"
        else:
            self._parser(issue, text)

    def _declared_text(self, issue: Issue) -> str | None:
        attribute = self._attribute(issue.ifc_class, issue.attribute or "")
        return type_text(attribute.type_of_attribute()) if attribute is not None else None

    def _value(self, issue: Issue) -> Any:
        try:
            return getattr(self.model.by_id(issue.entity_id or 0), issue.attribute or "")
        except Exception:  # a value that cannot be read is itself what is reported
            return None

    def _invalid_value(self, issue: Issue) -> None:
        attribute = self._attribute(issue.ifc_class, issue.attribute or "")
        value = self._value(issue)
        issue.found = _short(value)
        if attribute is None:
            issue.check = "type"
            issue.message = f"{issue.attribute}: {issue.found} is not valid"
            return
        declared = attribute.type_of_attribute()
        base = _resolved(declared)
        issue.expected = type_text(declared)
        if _is(base, wrapper.enumeration_type):
            issue.check, issue.expected = "enumeration", _enum_items(base)
        elif _is(base, wrapper.aggregation_type) and isinstance(value, tuple) and (
            len(value) < base.bound1() or (base.bound2() != -1 and len(value) > base.bound2())
        ):
            upper = "?" if base.bound2() == -1 else base.bound2()
            issue.check, issue.expected = "cardinality", f"{base.bound1()} to {upper} items ({issue.expected})"
            issue.found = f"{len(value)} items"
        else:
            issue.check = "type"
        issue.message = f"{issue.attribute}: {issue.found} is not {issue.expected}"

    def _inverse(self, issue: Issue, text: str) -> None:
        issue.check = "inverse"
        declared = text.split("\n", 2)[1].strip() if "\n" in text else None
        issue.expected = declared
        value = self._value(issue)
        count = len(value) if isinstance(value, tuple) else (0 if value is None else 1)
        issue.found = f"{count} ({_short(value)})" if count else "0"
        issue.message = f"inverse {issue.attribute}: {count} relationships, expected {declared}"

    def _unique(self, issue: Issue, text: str) -> None:
        rule = _RULE_NAME.search(text)
        issue.rule = rule[1] if rule else None
        if "base64" in text:
            issue.check, issue.attribute, issue.rule = "guid", "GlobalId", "IfcGloballyUniqueId"
            issue.expected = "22 characters of IFC's base64 (a 128-bit number)"
            issue.found = text.rpartition("Violated by:")[2].strip() or None
            issue.message = f"GlobalId is not a valid IFC GUID: {issue.found}"
            return
        issue.check = "unique"
        issue.attribute = "GlobalId" if issue.rule == "IfcRoot.UR1" else None
        other = text.rpartition("Violated by:\n")[2].strip().splitlines()
        issue.expected = rule[2].strip() if rule else "unique"
        issue.found = f"the same as {other[0].strip().split('=')[0]}" if other else None
        issue.message = f"{issue.rule}: {issue.expected}"

    def _parser(self, issue: Issue, text: str) -> None:
        # The parser's own messages (log_internal_cpp_errors): "<message> :\n\n<line of the file>".
        message = text.split(" :\n", 1)[0].strip()
        issue.message = message
        if (enum := _CPP_ENUM.search(message)) is not None:
            issue.check, issue.found = "enumeration", f".{enum[1]}."
            issue.attribute = self._enum_attribute(issue.ifc_class, enum[2])
            issue.message = f"{issue.attribute or 'an attribute'}: .{enum[1]}. is not a literal of {enum[2]}"
            try:
                issue.expected = _enum_items(self.schema.declaration_by_name(enum[2]))
            except (RuntimeError, IndexError):
                issue.expected = f"a value of {enum[2]}"
        elif (reference := _CPP_REFERENCE.search(message)) is not None:
            issue.check, issue.found = "reference", f"#{reference[1]} (no such instance)"
            issue.attribute = self._attribute_at(issue.ifc_class, int(reference[3]))
            issue.expected = "a reference to an instance in the file"
        elif (unknown := _CPP_UNKNOWN.search(message)) is not None:
            issue.check, issue.found = "unknown_entity", unknown[1]
            issue.expected = f"an entity of {unknown[2]}"
            issue.ifc_class = unknown[1]
        elif (count := _CPP_COUNT.search(message)) is not None:
            issue.check, issue.expected, issue.found = "attribute_count", f"{count[1]} attributes", f"{count[2]}"
        else:
            issue.check = "parse"

    def _enum_attribute(self, ifc_class: str | None, enum_name: str) -> str | None:
        try:
            entity = self.schema.declaration_by_name(ifc_class or "").as_entity()
        except (RuntimeError, IndexError):
            return None
        for attribute in entity.all_attributes() if entity is not None else ():
            base = _resolved(attribute.type_of_attribute())
            if _is(base, wrapper.enumeration_type) and base.name() == enum_name:
                return str(attribute.name())
        return None

    def _attribute_at(self, ifc_class: str | None, index: int) -> str | None:
        try:
            entity = self.schema.declaration_by_name(ifc_class or "").as_entity()
            return str(entity.all_attributes()[index].name()) if entity is not None else None
        except (RuntimeError, IndexError):
            return None

    def _rule(self, issue: Issue, text: str, rule: str | None, level: str) -> None:
        issue.check, issue.rule = "rule", rule
        if level == "info":
            # The rule executor reports a rule it could not evaluate (recursion too deep) at info level.
            issue.message = f"{rule or 'a rule'} could not be evaluated: {issue.message}"
            return
        definition, _, rest = text.partition("\n\nViolated by:\n")
        issue.expected = re.sub(r"^Rule \S+:\n", "", definition.split("\nRule ", 1)[-1]).strip() or None
        found = rest.split("\n\nOn instance:", 1)[0].strip()
        # EXPRESS's indeterminate (?) is printed as a Python object with its address: not the same twice.
        issue.found = _INDETERMINATE.sub("?", found) or None
        issue.message = f"{rule} is violated" if rule else "a global rule is violated"
