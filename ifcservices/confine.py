"""Every file a service touches stays inside the data directory, symlinks followed.

The gateway has already checked the paths, but a symlink placed inside the data directory, or one
changed since, could still point anywhere: the service resolves each path itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from contracts.paths import PathRole, path_fields
from ifcservices.errors import BadInput, PathEscape


def data_root(data_dir: Path) -> Path:
    """The data directory with every symlink resolved, the base all confinement checks compare to."""
    return Path(os.path.realpath(data_dir))


def resolve(data_dir: Path, relative: str) -> Path:
    """``relative`` resolved against the data directory; ``PathEscape`` if it lands outside."""
    root = data_root(data_dir)
    candidate = Path(os.path.realpath(root / relative))
    if candidate == root or root not in candidate.parents:
        raise PathEscape(f"path {relative!r} resolves outside the data directory")
    return candidate


def resolve_input(data_dir: Path, relative: str) -> Path:
    """An existing regular file inside the data directory."""
    path = resolve(data_dir, relative)
    if not path.is_file():
        raise BadInput(f"input file not found: {relative}")
    return path


def resolve_output(data_dir: Path, relative: str) -> Path:
    """A file path inside the data directory that may be (over)written; its folder may not exist yet."""
    path = resolve(data_dir, relative)
    if path.is_dir():
        raise BadInput(f"output path is a directory: {relative}")
    return path


def resolve_output_dir(data_dir: Path, relative: str) -> Path:
    """A folder inside the data directory that a tool writes outputs into, made when missing."""
    path = resolve(data_dir, relative)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # it, or a folder above it, is a file
        raise BadInput(f"output folder {relative} cannot be made: {exc.strerror}") from None
    return path


def relative_to_root(data_dir: Path, path: Path) -> str:
    """How clients name ``path``: relative to the data directory, with forward slashes."""
    return path.relative_to(data_root(data_dir)).as_posix()


def check_request_paths(model: BaseModel, data_dir: Path) -> None:
    """Refuse a request before it takes a slot when any of its paths escapes or an input is missing."""
    for _loc, role, owner, name in path_fields(model):
        value = getattr(owner, name)
        if role is PathRole.input:
            resolve_input(data_dir, value)
        else:
            resolve_output(data_dir, value)
