"""An ifcpatch recipe's positional arguments, checked against its parameters and given their types.

The parameters are those ``POST /patch/recipes/list`` lists (read from the recipe itself by the ifcpatch
service); the gateway checks a submit against them (a 422 naming the argument), the service again
before running it. Strings become the parameter's type ("1.5" for a float, "true" for a bool), as
the n8n node sends every generic argument as text; parameters that name files are paths in the data
directory, resolved (and jailed) by the caller's ``resolve_path``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Parameter = dict[str, Any]
# (role, value) -> the path to pass on; raises ValueError for a path that is refused.
PathResolver = Callable[[str, str], str]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class ArgumentRefused(ValueError):
    """An argument that does not fit its parameter; ``index`` is its place in ``arguments``."""

    def __init__(self, index: int | None, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def path_role(name: str, has_filter_glob: bool) -> str | None:
    """Whether a parameter names files: ``"input"`` (files the recipe reads), ``"output_dir"`` (a folder
    it writes to), or None. ifcpatch marks file parameters with a ``:filter_glob:`` in their docs."""
    if name == "output_dir":
        return "output_dir"
    return "input" if has_filter_glob else None


def _scalar(kind: str, value: Any) -> Any:
    """``value`` as ``kind`` (a type name), or ValueError."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
    elif kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    elif kind == "NoneType":
        if value is None:
            return None
    else:
        return value  # a type this module cannot check (ifcopenshell.file, Any, a recipe's own class)
    raise ValueError(f"expected {kind}")


def _one(parameter: Parameter, value: Any) -> Any:
    kinds = parameter.get("types") or ["Any"]
    if parameter.get("enum_items"):
        allowed = [str(item) for item in parameter["enum_items"]]
        if str(value) not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return str(value)
    if value is None and "NoneType" in kinds:
        return None
    # A value already of one of the types is kept as is: "1.5" stays text for a str-or-float parameter.
    for kind in kinds:
        try:
            if _scalar(kind, value) == value and type(_scalar(kind, value)) is type(value):
                return value
        except (ValueError, TypeError):
            continue
    # Else converted, text last: a number for a str-or-float parameter stays a number.
    for kind in sorted(kinds, key=lambda k: k == "str"):
        try:
            return _scalar(kind, value)
        except (ValueError, TypeError):
            continue
    raise ValueError(f"expected {' or '.join(kinds)}, got {json.dumps(value)[:80]}")


def _sequence(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return [value]
        return parsed if isinstance(parsed, list) else [value]
    return [value]


def coerce(recipe: str, parameters: list[Parameter], arguments: list[Any],
           resolve_path: PathResolver | None = None) -> list[Any]:
    """``arguments`` checked against ``parameters`` and converted; ``ArgumentRefused`` for the first misfit."""
    if len(arguments) > len(parameters):
        names = ", ".join(p["name"] for p in parameters) or "none"
        raise ArgumentRefused(len(parameters), f"{recipe} takes {len(parameters)} argument(s) ({names}), "
                                               f"got {len(arguments)}")
    for i, parameter in enumerate(parameters[len(arguments):], start=len(arguments)):
        if parameter.get("required"):
            raise ArgumentRefused(i, f"{recipe} needs argument {i}, {parameter['name']}")
    converted: list[Any] = []
    for i, (parameter, value) in enumerate(zip(parameters, arguments, strict=False)):
        try:
            if parameter.get("generic_type"):
                item = [_one(parameter, element) for element in _sequence(value)]
            else:
                item = _one(parameter, value)
            role = parameter.get("path_role")
            if role and resolve_path is not None:
                if isinstance(item, list):
                    item = [resolve_path(role, v) if isinstance(v, str) else v for v in item]
                elif isinstance(item, str) and item:
                    item = resolve_path(role, item)
        except ValueError as exc:
            message = exc.message if isinstance(exc, ArgumentRefused) else str(exc)
            raise ArgumentRefused(i, f"{recipe} argument {i} ({parameter['name']}): {message}") from None
        converted.append(item)
    return converted
