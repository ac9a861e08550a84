"""Which elements of a conversion produced no geometry, and why.

ifcopenshell's iterator silently leaves out an element whose shape fails (a zero-depth extrusion, a
degenerate face) and yields an empty mesh for one its openings cut away entirely: the output then
lacks them with nothing said. The conversion counts what the iterator yielded against the elements
it was asked for, and builds each missing one alone once more to get the kernel's own error.
"""

from __future__ import annotations

from typing import Any

import ifcopenshell
import ifcopenshell.geom

from ifcservices.ifcfiles import parser_log
from ifcservices.skipped import MAX_LISTED, Skipped, error_text

EMPTY = "its geometry is empty (its boolean operations or openings leave nothing)"


def _matches(element: Any, chosen: list[Any]) -> bool:
    for item in chosen:
        if isinstance(item, str):
            if element.is_a(item):
                return True
        elif item.id() == element.id():
            return True
    return False


def expected_elements(model: ifcopenshell.file, filters: dict[str, list[Any]]) -> list[Any]:
    """The products with a 3D body the iterator is asked to convert: IfcProducts with a "Body"
    representation (or one without identifier), within the request's include or exclude."""
    found = []
    for product in model.by_type("IfcProduct"):
        shape = product.Representation
        if shape is None or not any(r.RepresentationIdentifier in (None, "Body") for r in shape.Representations):
            continue
        if "include" in filters and not _matches(product, filters["include"]):
            continue
        if "exclude" in filters and _matches(product, filters["exclude"]):
            continue
        found.append(product)
    return found


def is_empty(shape: Any) -> bool:
    """A triangulated shape with no vertices (native shapes are not checked: their size is unknown)."""
    verts = getattr(getattr(shape, "geometry", None), "verts", None)
    return verts is not None and len(verts) == 0


def _why(settings: ifcopenshell.geom.settings, element: Any) -> str:
    parser_log()  # the messages of this element only
    try:
        shape = ifcopenshell.geom.create_shape(settings, element)
    except Exception as exc:  # the kernel's errors come as RuntimeError, sometimes others
        errors = [line.split("] ", 2)[-1] for line in parser_log().splitlines() if "[error]" in line.lower()]
        return "; ".join(errors[:2]) or error_text(exc)
    return EMPTY if is_empty(shape) else "left out by the iterator"


def without_geometry(
    settings: ifcopenshell.geom.settings,
    expected: list[Any],
    yielded: set[int],
    empty: set[int],
    into: Skipped | None = None,
) -> Skipped:
    """The expected elements the iterator did not yield, or yielded empty, each with its error, added
    to ``into`` (a new collection if None)."""
    missing = Skipped() if into is None else into
    for element in expected:
        if element in missing:
            continue
        if element.id() in empty:
            missing.add(element, EMPTY)
        elif element.id() not in yielded:
            # Building a shape again costs; past the listed ones only the count matters.
            missing.add(element, _why(settings, element) if len(missing.entries) < MAX_LISTED else "")
    return missing
