"""IfcConvert's flags on ifcopenshell 0.9: geometry settings, element filters, and what is reported back.

``contracts.convert_fields`` says which flag is done how; this module does it: a flag that is an
ifcopenshell.geom setting is set under its own name, IfcConvert's ``--include``/``--exclude`` kinds
(entities, ``attribute <Name> <values>``, the "+" forms that take each element's decomposition along)
become the iterator's include/exclude, and the flags with no effect here are named in the result.
"""

from __future__ import annotations

from typing import Any

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.ifcopenshell_wrapper as wrapper
import ifcopenshell.util.element

from contracts.convert_fields import DIRECT_SETTINGS, NO_EFFECT, SETTING_NAMES, numbers
from contracts.requests import IfcConvertRequest
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import check_classes

# IfcConvert's default: spaces and openings are not part of the visible model.
DEFAULT_EXCLUDE = ["IfcSpace", "IfcOpeningElement"]
KERNELS = ("opencascade", "cgal", "cgal-simple", "hybrid-cgal-simple-opencascade")


def _set(settings: ifcopenshell.geom.settings, field: str, name: str, value: Any) -> None:
    try:
        settings.set(name, value)  # type: ignore[arg-type]  # names checked by contracts.convert_fields
    except (RuntimeError, TypeError, ValueError) as exc:
        raise BadInput(f"{field}: {value!r} is not a valid value ({exc})") from None


def apply_flags(request: IfcConvertRequest, settings: ifcopenshell.geom.settings) -> None:
    """Set every given flag that is an ifcopenshell.geom setting of the same meaning."""
    for field in DIRECT_SETTINGS:
        value = getattr(request, field)
        if value is None or value is False:  # not given: ifcopenshell's default, as IfcConvert's
            continue
        _set(settings, field, SETTING_NAMES.get(field, field.replace("_", "-")), value)
    if request.model_offset is not None:
        _set(settings, "model_offset", "model-offset", numbers("model_offset", request.model_offset, 3))
    if request.model_rotation is not None:
        _set(settings, "model_rotation", "model-rotation", numbers("model_rotation", request.model_rotation, 4))
    if request.elevation_ref_guid:
        _set(settings, "elevation_ref_guid", "elevation-ref-guid", ";".join(request.elevation_ref_guid))
    if request.context_ids:
        ids = [c for c in request.context_ids if c.isdigit()]
        names = [c for c in request.context_ids if not c.isdigit()]
        if ids:
            _set(settings, "context_ids", "context-ids", [int(c) for c in ids])
        if names:
            _set(settings, "context_ids", "context-identifiers", names)


def geometry_library(request: IfcConvertRequest) -> str:
    """The iterator's geometry library (IfcConvert's ``--kernel``)."""
    kernel = request.kernel or "opencascade"
    if kernel not in KERNELS or not wrapper.has_geometry_library(kernel):
        available = [k for k in KERNELS if wrapper.has_geometry_library(k)]
        raise BadInput(f"kernel: {kernel!r} is not available; use one of {available}")
    return kernel


def threads(request: IfcConvertRequest, share: int) -> int:
    """IfcConvert's ``-j``, within this task's share of the cores (``share``)."""
    return min(request.threads, share) if request.threads else share


def _select(model: ifcopenshell.file, kind: str | None, values: list[str], field: str) -> list[Any]:
    """The elements an IfcConvert filter names: classes (entities), or ``attribute <Name> <value>...``."""
    if (kind or "entities") == "entities":
        check_classes(model, values, field)
        return [e for name in values for e in model.by_type(name)]
    if len(values) < 2:
        raise BadInput(f"{field}: an attribute filter is the attribute's name, then one or more values")
    attribute, wanted = values[0], set(values[1:])
    return [e for e in model.by_type("IfcProduct") if str(getattr(e, attribute, None)) in wanted]


def _with_decomposition(elements: list[Any]) -> list[Any]:
    """The "+" filters: each element with everything it aggregates, contains, or has as openings."""
    found = {e.id(): e for e in elements}
    for element in elements:
        for part in ifcopenshell.util.element.get_decomposition(element):
            found.setdefault(part.id(), part)
    return list(found.values())


def filters(model: ifcopenshell.file, request: IfcConvertRequest) -> dict[str, list[Any]]:
    """The iterator's include or exclude for ``--include[+]``/``--exclude[+]`` (default: IfcSpace and
    IfcOpeningElement left out, as IfcConvert does)."""
    includes = request.include or request.include_plus
    excludes = request.exclude or request.exclude_plus
    if includes and excludes:
        raise BadInput("include and exclude cannot both be given")
    side = "include" if includes else "exclude"
    plain: list[str] | None = getattr(request, side)
    plus: list[str] | None = getattr(request, f"{side}_plus")
    plain_kind, plus_kind = getattr(request, f"{side}_type"), getattr(request, f"{side}_plus_type")
    if side == "exclude" and plain is None and plus is None:
        plain = DEFAULT_EXCLUDE
    if not plus and (plain_kind or "entities") == "entities":
        check_classes(model, plain or [], side)  # class names as they are: the iterator filters by class
        return {side: list(plain)} if plain else {}
    chosen = _select(model, plain_kind, plain, side) if plain else []
    if plus:
        chosen += _with_decomposition(_select(model, plus_kind, plus, f"{side}_plus"))
    if side == "include" and not chosen:
        raise BadInput(f"{side}: matches no element of the model")
    return {side: chosen} if chosen else {}


def iterated_products(model: ifcopenshell.file, filters: dict[str, list[Any]]) -> set[int]:
    """The products the iterator surely considers under ``filters`` (for the geometry cache: a product
    listed here and not yielded has no geometry). Where ifcopenshell could read a class filter either
    way (with its subclasses or without), the reading that lists fewer products is taken."""
    chosen = filters.get("include", filters.get("exclude", []))
    names = {item for item in chosen if isinstance(item, str)}
    ids = {item.id() for item in chosen if not isinstance(item, str)}
    products: list[Any] = list(model.by_type("IfcProduct"))
    if "include" in filters:
        return ids | {p.id() for p in products if p.is_a() in names}
    return {p.id() for p in products if p.id() not in ids and not any(p.is_a(name) for name in names)}


# Why each ignored flag changes nothing (for the conversion log).
WHY_IGNORED: dict[str, str] = {"merge_boolean_operands": "not in ifcopenshell 0.9", **NO_EFFECT}


def ignored(request: IfcConvertRequest) -> list[str]:
    """The given flags that change nothing in what is written here (``WHY_IGNORED`` says why)."""
    return [name for name in WHY_IGNORED if getattr(request, name) not in (None, False)]
