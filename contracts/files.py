"""Where request paths point: inside the data directory, or refused.

Inputs must exist as files inside the data directory after every symlink is followed. A bare name
that is not found is looked for in ``uploads/`` too, as the RQ system's clients send the uploaded
name alone. Outputs always land in ``output/<service>/``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from contracts.paths import PathRole, path_fields


class PathRefused(ValueError):
    """A path field that names no usable file; ``loc`` says which field."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def inside(root: Path, candidate: Path) -> bool:
    """Whether ``candidate`` is ``root`` or below it (both already resolved)."""
    text, top = str(candidate), str(root)
    return text == top or text.startswith(top.rstrip(os.sep) + os.sep)


@lru_cache(maxsize=8)
def _root(data_dir: Path) -> Path:
    # Resolved once per data directory rather than on every path of every submit.
    return data_dir.resolve()


def resolve_input(data_dir: Path, rel: str) -> str | None:
    """The data-dir-relative path of an existing input file, or None."""
    root = _root(data_dir)
    for base in (root, root / "uploads"):
        real = Path(os.path.realpath(base / rel))
        try:
            if inside(root, real) and real.is_file():
                return real.relative_to(root).as_posix()
        except OSError:  # e.g. a name longer than the file system allows: no such input
            continue
    return None


def resolve_output(data_dir: Path, service: str, rel: str) -> str | None:
    """The data-dir-relative path an output is written to, or None when it would leave its folder."""
    root = _root(data_dir)
    prefix = PurePosixPath("output", service)
    path = PurePosixPath(rel)
    if path.parts[: len(prefix.parts)] != prefix.parts:
        path = prefix / path
    real = Path(os.path.realpath(root / path))
    try:
        if not inside(root / prefix, real) or real.is_dir():
            return None
    except OSError:  # e.g. a name longer than the file system allows: it could never be written
        return None
    return path.as_posix()


def normalize_paths(model: BaseModel, data_dir: Path, service: str) -> None:
    """Rewrite every path field of ``model`` in place to its checked data-dir-relative form."""
    for loc, role, owner, name in list(path_fields(model)):
        value = getattr(owner, name)
        if role is PathRole.input:
            resolved = resolve_input(data_dir, value)
            if resolved is None:
                raise PathRefused(loc, f"input file {value!r} not found in the data directory")
        else:
            resolved = resolve_output(data_dir, service, value)
            if resolved is None:
                raise PathRefused(loc, f"output path {value!r} leaves output/{service}/ or names a folder")
        setattr(owner, name, resolved)
