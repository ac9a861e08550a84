"""Opening IFC files so that a corrupt, truncated or non-IFC file is a clear 422, not a crash later."""

from __future__ import annotations

import os
from pathlib import Path

import ifcopenshell
import ifcopenshell.ifcopenshell_wrapper as wrapper

from ifcservices.errors import BadInput

_TRAILER = b"END-ISO-10303-21"
_TAIL_BYTES = 4096
_SPF_SUFFIXES = {".ifc", ".ifcspf", ".stp", ".step"}


def _spf_is_complete(path: Path) -> bool:
    # ifcopenshell opens a truncated STEP file without complaint and silently drops what is missing,
    # so a file cut short by an interrupted upload would yield a plausible but wrong result.
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - _TAIL_BYTES))
        return _TRAILER in handle.read()


def parser_log() -> str:
    """Messages ifcopenshell logged since the last call (reading the log empties it)."""
    return str(wrapper.get_log())  # type: ignore[no-untyped-call]


def _first_parser_error() -> str:
    for line in parser_log().splitlines():
        if "[error]" in line.lower():
            # "[error] [2024-01-01 12:00:00] message": keep the message.
            return line.split("] ", 2)[-1].strip()
    return ""


def supported_schemas() -> list[str]:
    """The IFC schemas this ifcopenshell build reads (0.9: IFC2X3, IFC4, IFC4X3_ADD2)."""
    names = wrapper.schema_names()
    return [str(name) for name in names if str(name).upper().startswith("IFC")]


def _unsupported(relative: str, error: ifcopenshell.SchemaError) -> BadInput:
    # ifcopenshell says "Unsupported schema: IFC2X_FINAL": a readable file in a schema it has no
    # definitions for, which is not the same as a file that is no IFC at all.
    schema = str(error).rpartition(":")[2].strip() or "its schema"
    return BadInput(f"{relative}: {schema} is not supported; supported: {', '.join(supported_schemas())}")


def open_ifc(path: Path, relative: str) -> ifcopenshell.file:
    """Open ``path`` or raise ``BadInput`` naming ``relative`` and the parser's own message."""
    if path.stat().st_size == 0:
        raise BadInput(f"{relative} is not a valid IFC file: the file is empty")
    parser_log()  # drop earlier messages so the next error belongs to this file
    try:
        model = ifcopenshell.open(os.fspath(path))
    except ifcopenshell.SchemaError as exc:
        raise _unsupported(relative, exc) from None
    except (ifcopenshell.Error, OSError, RuntimeError, ValueError) as exc:
        raise BadInput(f"{relative} is not a valid IFC file: {exc}") from None
    if not isinstance(model, ifcopenshell.file):
        raise BadInput(f"{relative} is not an IFC model file")
    if path.suffix.lower() in _SPF_SUFFIXES and not _spf_is_complete(path):
        detail = _first_parser_error()
        raise BadInput(
            f"{relative} is not a valid IFC file: truncated, it ends without END-ISO-10303-21"
            + (f" (parser: {detail})" if detail else "")
        )
    return model


def check_classes(model: ifcopenshell.file, names: list[str], what: str) -> None:
    """Refuse IFC class names the model's schema does not know (typos would otherwise match nothing)."""
    schema = wrapper.schema_by_name(model.schema_identifier)
    for name in names:
        try:
            schema.declaration_by_name(name)
        except (RuntimeError, IndexError):
            raise BadInput(f"{what}: {name!r} is not an IFC class of schema {model.schema}") from None
