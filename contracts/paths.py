"""Path fields in requests: relative to the data directory (or one of the RQ system's absolute forms of
such a path), never leaving it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import Enum
from functools import cache
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo


class PathRole(Enum):
    """Marks a request field as a file the operation reads (input) or writes (output)."""

    input = "input"
    output = "output"


# Absolute paths the RQ system's answers and the n8n node's dropdowns and placeholders hold, by their
# first folders, and where they are in the data directory: "/uploads/a.ifc" (upload answers, dropdowns),
# "/output/<kind>/x.csv" (results, placeholders), "/app/uploads/a.ifc" (the node's formatFileName),
# "/examples/..." (its listing). Any other absolute path is refused.
ABSOLUTE_ROOTS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("app", "uploads"): ("uploads",),
    ("uploads",): ("uploads",),
    ("output",): ("output",),
    ("examples",): ("examples",),
}
_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


def _mapped_absolute(parts: list[str]) -> list[str] | None:
    for prefix, target in ABSOLUTE_ROOTS.items():
        if tuple(parts[: len(prefix)]) == prefix:
            return [*target, *parts[len(prefix) :]]
    return None


def check_relative_path(value: str) -> str:
    """Refuse what can never be a file inside the data directory; existence is checked later.

    Returns the data-dir-relative path as ``str(PurePosixPath(value))`` spells it ("a//b/./c/" is
    "a/b/c"), made with string operations: this runs for every path of every submit. The RQ system's
    absolute forms (``ABSOLUTE_ROOTS``) and its ``s3://<bucket>/<key>`` URIs map to the same place
    ("/uploads/a.ifc" and "s3://b/uploads/a.ifc" are "uploads/a.ifc").
    """
    if not value or len(value) > 1024:
        raise ValueError("must be a non-empty path of at most 1024 characters")
    if "\x00" in value or "\\" in value:
        raise ValueError("must not contain NUL or backslash characters")
    absolute = value.startswith("/")
    if value.startswith("s3://"):
        bucket, _, key = value[len("s3://") :].partition("/")
        if not _BUCKET.match(bucket) or not key.strip("/"):
            raise ValueError("must be an s3://<bucket>/<key> URI naming a file")
        value, absolute = key, False
    parts = [part for part in value.split("/") if part and part != "."]
    if ".." in parts:
        raise ValueError("must not contain '..'")
    if absolute:
        mapped = _mapped_absolute(parts)
        if mapped is None:
            roots = ", ".join("/" + "/".join(p) + "/" for p in ABSOLUTE_ROOTS)
            raise ValueError(f"must be relative to the data directory, or start with one of {roots}")
        parts = mapped
    return "/".join(parts) or "."


def suffix_of(path: str) -> str:
    """``PurePosixPath(path).suffix``: the last name's extension with its dot, "" when it has none."""
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


InputPath = Annotated[str, PathRole.input, AfterValidator(check_relative_path)]
OutputPath = Annotated[str, PathRole.output, AfterValidator(check_relative_path)]


def role_of(field: FieldInfo) -> PathRole | None:
    # Optional[InputPath] keeps the marker inside the union's Annotated member, not in field.metadata.
    candidates: list[Any] = list(field.metadata)
    for arg in get_args(field.annotation):
        if get_origin(arg) is Annotated:
            candidates.extend(arg.__metadata__)
    return next((m for m in candidates if isinstance(m, PathRole)), None)


Loc = tuple[str | int, ...]


def _may_hold_model(annotation: Any) -> bool:
    """Whether a field of this type can hold a model (directly, in a list or union, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_may_hold_model(arg) for arg in get_args(annotation))


@cache
def _plan(model_class: type[BaseModel]) -> tuple[tuple[tuple[str, PathRole], ...], tuple[str, ...]]:
    # Per class, once: its path fields, and the fields that can hold models with path fields of their
    # own. A submit then looks at those few fields instead of every field of the request.
    paths, nested = [], []
    for name, field in model_class.model_fields.items():
        role = role_of(field)
        if role is not None:
            paths.append((name, role))
        elif _may_hold_model(field.annotation):
            nested.append(name)
    return tuple(paths), tuple(nested)


def path_fields(model: BaseModel, loc: Loc = ()) -> Iterator[tuple[Loc, PathRole, Any, str]]:
    """Yield ``(loc, role, owner, field_name)`` for every path field set in ``model``, nested ones too."""
    paths, nested = _plan(type(model))
    for name, role in paths:
        if getattr(model, name) is not None:
            yield (*loc, name), role, model, name
    for name in nested:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from path_fields(value, (*loc, name))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from path_fields(item, (*loc, name, i))
