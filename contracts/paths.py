"""Path fields in requests: relative to the data directory, never leaving it."""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from functools import cache
from pathlib import PurePosixPath
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo


class PathRole(Enum):
    """Marks a request field as a file the operation reads (input) or writes (output)."""

    input = "input"
    output = "output"


def check_relative_path(value: str) -> str:
    """Refuse what can never be a file inside the data directory; existence is checked later."""
    if not value or len(value) > 1024:
        raise ValueError("must be a non-empty path of at most 1024 characters")
    if "\x00" in value or "\\" in value:
        raise ValueError("must not contain NUL or backslash characters")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise ValueError("must be relative to the data directory, not absolute")
    if ".." in path.parts:
        raise ValueError("must not contain '..'")
    return str(path)


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


@cache
def _roles(model_class: type[BaseModel]) -> tuple[tuple[str, PathRole | None], ...]:
    # Per class, once: this runs on every submit.
    return tuple((name, role_of(field)) for name, field in model_class.model_fields.items())


def path_fields(model: BaseModel, loc: Loc = ()) -> Iterator[tuple[Loc, PathRole, Any, str]]:
    """Yield ``(loc, role, owner, field_name)`` for every path field set in ``model``, nested ones too."""
    for name, role in _roles(type(model)):
        value = getattr(model, name)
        if role is not None:
            if value is not None:
                yield (*loc, name), role, model, name
            continue
        if isinstance(value, BaseModel):
            yield from path_fields(value, (*loc, name))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from path_fields(item, (*loc, name, i))
