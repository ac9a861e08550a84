"""The STEP syntax of a file (ISO 10303-21), and where each entity instance of it starts.

ifcopenshell's own parser is lenient: it reads a line with stray brackets, a misspelt DATA or a
bracket left open and carries on, so its model alone cannot say a file is well formed. The syntax is
therefore checked with ``ifcopenshell.simple_spf``, the strict Lark-based parser that ships with
ifcopenshell (the one buildingSMART's validation service uses), which names the line and column.
"""

from __future__ import annotations

import re
from pathlib import Path

from ifcopenshell import simple_spf

from ifcservices.errors import BadInput
from ifcservices.tools.validate_issues import Issue

MAGIC = b"ISO-10303-21;"
_BOM = b"\xef\xbb\xbf"
_ENTITY_START = re.compile(rb"(?:^|;)\s*#(\d+)\s*=")
_HEADER_ENTITY = re.compile(rb"^\s*(FILE_DESCRIPTION|FILE_NAME|FILE_SCHEMA)\b")
_LINE_TEXT_LIMIT = 300


def check_is_step(path: Path, relative: str) -> None:
    """Refuse what is no STEP file at all (a shopping list, a zip, ifcXML): nothing to validate."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    if not head.strip():
        raise BadInput(f"{relative} is not a valid IFC file: the file is empty")
    if not head.removeprefix(_BOM).lstrip().startswith(MAGIC):
        raise BadInput(
            f"{relative} is not an IFC file: it does not start with ISO-10303-21; (only IFC-SPF, .ifc, is validated)"
        )


def _line_at(content: str, number: int) -> str:
    lines = content.split("\n", number)
    return lines[number - 1][:_LINE_TEXT_LIMIT] if 0 < number <= len(lines) else ""


def _decode(raw: bytes) -> tuple[str | None, Issue | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        found = f"byte 0x{raw[exc.start]:02X}"
        return None, Issue(
            severity="error", check="syntax", line=line, column=column, found=found,
            expected="ASCII (other characters encoded as \\X2\\...\\X0\\)",
            message=f"{found} on line {line} is not valid text: STEP files are ASCII",
        )


def _syntax_issue(error: Exception, content: str) -> Issue:
    try:
        detail = error.asdict(with_message=False)  # type: ignore[attr-defined]
    except Exception:  # the parser's own description failed: its message still says it
        return Issue(severity="error", check="syntax", message=str(error).splitlines()[0] if str(error) else "syntax")
    kind = detail.get("type")
    line = detail.get("lineno")
    if kind == "duplicate_name":
        return Issue(severity="error", check="syntax", entity_id=int(detail["name"]), line=line,
                     expected="each instance name once", found=f"#{detail['name']} again",
                     message=f"duplicate instance name #{detail['name']} on line {line}")
    if kind == "invalid_name":
        return Issue(severity="error", check="syntax", entity_id=None, line=line, expected="#1 or higher",
                     found=f"#{detail['name']}", message=f"invalid instance name #{detail['name']} on line {line}")
    if kind == "invalid_header_field":
        return Issue(severity="error", check="header", ifc_class=str(detail.get("field")),
                     expected=f"{detail.get('expected_field_count')} fields",
                     found=f"{detail.get('actual_field_count')} fields",
                     message=f"{detail.get('field')} has {detail.get('actual_field_count')} fields, "
                             f"not {detail.get('expected_field_count')}")
    expected = [e for e in detail.get("expected") or [] if not e.startswith("__")]
    found = detail.get("found_value") or ("end of file" if detail.get("found_type") == "$end" else "")
    found_text = f"{detail.get('found_type')} {found!r}" if found != "end of file" else found
    return Issue(
        severity="error", check="syntax", line=line, column=detail.get("column"),
        expected=" or ".join(expected) if expected else None, found=found_text,
        message=f"syntax error on line {line}, column {detail.get('column')}: unexpected {found_text}"
        + (f" in {_line_at(content, line).strip()!r}" if isinstance(line, int) and line > 0 else ""),
    )


def syntax_issues(path: Path) -> tuple[list[Issue], bool]:
    """The file's syntax errors, and whether the rest can be read at all (False after a grammar error:
    a duplicate instance name leaves the file readable, a bracket left open does not)."""
    content, undecodable = _decode(path.read_bytes())
    if content is None:
        return [undecodable] if undecodable is not None else [], False
    try:
        simple_spf.parse(filecontent=content, with_tree=False)
    except simple_spf.CollectedValidationErrors as collected:
        issues = [_syntax_issue(error, content) for error in collected.errors]
        readable = all(error.__class__.__name__ != "SyntaxError" for error in collected.errors)
        return issues, readable
    return [], True


def entity_lines(path: Path, ids: set[int]) -> tuple[dict[int, int], dict[str, int]]:
    """The line each of ``ids`` starts on, and the lines of the header entities (FILE_NAME, ...):
    one pass over the file, stopping once every id is found."""
    lines: dict[int, int] = {}
    header: dict[str, int] = {}
    in_header = True
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if in_header:
                if (match := _HEADER_ENTITY.match(raw)) is not None:
                    header.setdefault(match[1].decode(), number)
                if raw.strip().startswith(b"DATA;"):
                    in_header = False
                continue
            if b"#" not in raw:
                continue
            for match in _ENTITY_START.finditer(raw):
                entity = int(match[1])
                if entity in ids and entity not in lines:
                    lines[entity] = number
            if len(lines) == len(ids):
                break
    return lines, header
