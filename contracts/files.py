"""Where request paths point: inside the data directory, or refused.

Inputs must exist as files inside the data directory after every symlink is followed. A bare name
that is not found is looked for in ``uploads/`` too, as the RQ system's clients send the uploaded
name alone. Outputs always land in ``output/<service>/``.
"""

from __future__ import annotations

import os
import stat
import time
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel

from contracts.paths import PathRole, path_fields


class PathRefused(ValueError):
    """A path field that names no usable file; ``loc`` says which field."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def inside(root: Path | str, candidate: Path | str) -> bool:
    """Whether ``candidate`` is ``root`` or below it (both already resolved)."""
    text, top = str(candidate), str(root)
    return text == top or text.startswith(top.rstrip(os.sep) + os.sep)


@lru_cache(maxsize=8)
def _root(data_dir: Path) -> str:
    # Resolved once per data directory rather than on every path of every submit; strings, not Path
    # objects, from here on: this runs for every path of every submit.
    return str(data_dir.resolve())


# Directories found real, by (root, data-dir-relative path): (resolved path, until when to believe it).
# A submit names a file in one of a few directories; resolving each again on every submit cost more
# than the rest of the check. Only directories that exist are kept, and only briefly: one made or
# removed is seen at once, one swapped for a symlink within a second. The services confine every
# path again when they open it (ifcservices/confine.py), so this is never the last word.
_DIRS: dict[tuple[str, str], tuple[str, float]] = {}
_DIRS_MAX = 256
DIR_CACHE_SECONDS = 1.0


def _join(folder: str, name: str) -> str:
    # os.path.join for a resolved folder and one plain name (no slash in it), without its generality.
    return folder + name if folder.endswith("/") else f"{folder}/{name}"


def _real_dir(root: str, rel: str) -> str | None:
    """``os.path.realpath`` of the directory ``root/rel``; None when it does not exist, and
    ``NotADirectoryError`` when something else is in the way."""
    now = time.monotonic()
    known = _DIRS.get((root, rel))
    if known is not None and known[1] > now:
        return known[0]
    path = root
    for part in rel.split("/"):
        path = _join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            path = os.path.realpath(os.path.join(root, rel))  # the rest is resolved at once
            if not os.path.lexists(path):
                return None
            if not os.path.isdir(path):
                raise NotADirectoryError(path)
            break
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(path)
    if len(_DIRS) >= _DIRS_MAX:
        _DIRS.clear()  # many directories named: start over rather than keep an index of them all
    _DIRS[(root, rel)] = (path, now + DIR_CACHE_SECONDS)
    return path


def _lookup(root: str, rel: str) -> tuple[str, os.stat_result | None]:
    """Where ``rel`` (checked by ``check_relative_path``: no "..", no "//") leads under the resolved
    ``root``, and its ``lstat`` (None when it does not exist): the answer of ``os.path.realpath``.

    The directory part is resolved through ``_real_dir``; the file itself is looked at every time.
    """
    folder, _, name = rel.rpartition("/")
    parent = _real_dir(root, folder) if folder else root
    if parent is None:
        return os.path.join(root, rel), None  # no such directory: nothing there
    path = _join(parent, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path, None
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        try:
            return real, os.lstat(real)
        except FileNotFoundError:
            return real, None
    return path, st


def resolve_input(data_dir: Path, rel: str) -> str | None:
    """The data-dir-relative path of an existing input file, or None."""
    root = _root(data_dir)
    for base in ("", "uploads/"):
        try:
            real, st = _lookup(root, base + rel)
        except (OSError, ValueError):  # e.g. a name longer than the file system allows: no such input
            continue
        if st is not None and stat.S_ISREG(st.st_mode) and inside(root, real):
            return real[len(root.rstrip(os.sep)) + 1 :].replace(os.sep, "/")
    return None


def resolve_output(data_dir: Path, service: str, rel: str) -> str | None:
    """The data-dir-relative path an output is written to, or None when it would leave its folder."""
    root = _root(data_dir)
    # check_relative_path has normalised ``rel`` (no "..", no "//", no "./"), so plain string tests do.
    prefix = f"output/{service}"
    path = rel if rel == prefix or rel.startswith(prefix + "/") else f"{prefix}/{rel}"
    try:
        real, st = _lookup(root, path)
    except (OSError, ValueError):  # e.g. a name longer than the file system allows: it could never be written
        return None
    if not inside(os.path.join(root, prefix), real) or (st is not None and stat.S_ISDIR(st.st_mode)):
        return None
    return path


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
