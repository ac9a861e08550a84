"""Where request paths point: inside the data directory, or refused.

Every path is resolved with ``os.path.realpath`` (every symlink followed) and must stay inside the
data directory. Inputs must be existing regular files; a name that is not found is looked for in
``uploads/`` too, as the RQ system's clients send the uploaded name alone, and an RQ-era output path
(``output/<kind>/x``, e.g. ``/output/csv/x.csv``) is looked for where ifcflow put it
(``output/<service>/<kind>/x`` or ``output/<service>/x``). Outputs always land in ``output/<service>/``,
never on a folder and never below an existing file: an RQ-era ``output/<kind>/x`` is written to
``output/<service>/<kind>/x``. The services confine every path again when they open it
(ifcservices/confine.py): a link swapped in between is caught there.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

from pydantic import BaseModel

from contracts.operations import SERVICES
from contracts.paths import PathRole, path_fields

# The RQ system's output folders (output/<kind>/), by the service whose outputs they held: where an RQ-era
# input path is looked for first. Other kinds (the n8n node's placeholders say glb, ifc, reports) are
# looked for under every service.
RQ_OUTPUT_KINDS: dict[str, str] = {
    "converted": "ifcconvert",
    "clash": "ifcclash",
    "csv": "ifccsv",
    "xlsx": "ifccsv",
    "ods": "ifccsv",
    "ifc_updated": "ifccsv",
    "ids": "ifctester",
    "diff": "ifcdiff",
    "json": "ifc2json",
    "qto": "ifc5d",
    "patch": "ifcpatch",
}


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


@functools.cache
def data_root(data_dir: Path) -> str:
    """The configured data directory, resolved once per process: it is configuration, not request
    input (every path a request names is resolved anew, each time)."""
    return os.path.realpath(data_dir)


def _relative(root: str, real: str) -> str:
    return os.path.relpath(real, root).replace(os.sep, "/")


def input_candidates(rel: str) -> list[str]:
    """Where an input named ``rel`` is looked for, in order: as named, in ``uploads/``, and for an
    RQ-era ``output/<kind>/<rest>`` (kind no service of ours) below each service's output folder."""
    candidates = [rel, f"uploads/{rel}"]
    top, _, below = rel.partition("/")
    kind, _, rest = below.partition("/")
    if top == "output" and rest and kind not in SERVICES:
        first = RQ_OUTPUT_KINDS.get(kind)
        services = [s for s in (first, *SERVICES) if s in SERVICES]
        for service in dict.fromkeys(services):
            candidates += [f"output/{service}/{below}", f"output/{service}/{rest}"]
    return candidates


def resolve_input(data_dir: Path, rel: str) -> str | None:
    """The data-dir-relative path of an existing input file, or None.

    ``rel`` has passed ``contracts.paths.check_relative_path`` (relative, no "..", no NUL).
    """
    root = data_root(data_dir)
    for candidate in input_candidates(rel):
        try:
            path = os.path.join(root, candidate)
            # stat follows every link as realpath would: a path that leads nowhere is skipped at once.
            if not stat.S_ISREG(os.stat(path).st_mode):
                continue
            real = os.path.realpath(path)
            is_file = inside(root, real) and stat.S_ISREG(os.stat(real).st_mode)
        except (OSError, ValueError):  # missing, or a name longer than the file system allows
            continue
        if is_file:
            return _relative(root, real)
    return None


def output_path(service: str, rel: str) -> str:
    """Where an output named ``rel`` goes: ``output/<service>/`` as named, ``rel`` itself when already
    there, an RQ-era ``output/<kind>/x`` (or ``output/x``) as ``output/<service>/<kind>/x``."""
    folder = f"output/{service}"
    if rel == folder or rel.startswith(folder + "/"):
        return rel
    if rel.startswith("output/"):
        return f"{folder}/{rel.removeprefix('output/')}"
    return f"{folder}/{rel}"


def resolve_output(data_dir: Path, service: str, rel: str) -> str | None:
    """The data-dir-relative path an output is written to, or None when it would leave
    ``output/<service>/``, names a folder, or runs through an existing file."""
    return _checked_output(data_dir, service, output_path(service, rel), folder_wanted=False)


def output_dir_path(service: str, rel: str) -> str:
    """Where a folder of outputs named ``rel`` goes: as ``output_path`` puts a file, ``.`` being
    ``output/<service>/`` itself."""
    return f"output/{service}" if rel == "." else output_path(service, rel)


def resolve_output_dir(data_dir: Path, service: str, rel: str) -> str | None:
    """The data-dir-relative folder a tool writes its outputs into (an ifcpatch recipe's
    ``output_dir``), or None when it would leave ``output/<service>/`` or is, or runs through, a file.

    Unlike an output file's, the folder may exist already: a recipe run again writes into it again."""
    return _checked_output(data_dir, service, output_dir_path(service, rel), folder_wanted=True)


def _checked_output(data_dir: Path, service: str, path: str, *, folder_wanted: bool) -> str | None:
    """``path`` when it stays in ``output/<service>/`` and is not there yet or is what is wanted (a
    file or a folder); else None."""
    root = data_root(data_dir)
    try:
        real = os.path.realpath(os.path.join(root, path))
        if not inside(os.path.join(root, f"output/{service}"), real):
            return None
        is_dir = stat.S_ISDIR(os.lstat(real).st_mode)
    except FileNotFoundError:  # not there yet: it (and any missing folder above it) is made by the service
        return path
    except (OSError, ValueError):  # below an existing file (ENOTDIR), or a name too long to ever be made
        return None
    return path if is_dir == folder_wanted else None


def normalize_paths(model: BaseModel, data_dir: Path, service: str) -> None:
    """Rewrite every path field of ``model`` in place to its checked data-dir-relative form;
    ``PathRefused`` names the first field that is refused."""
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
