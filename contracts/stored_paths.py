"""A request's paths checked against the store, and its inputs pinned to versions, at submit.

The same rules as ``contracts.files`` (an input is looked for as named, in ``uploads/`` and in the
RQ-era output folders: ``input_candidates``; an output always lands in ``output/<service>/``:
``output_path``), on either backend. Each input is then pinned as ifcpipeline's ``pin_for`` does:
``input_version_ids[<name as the client wrote it>]``, else ``input_version_id`` for the main input (the
first input field, as ``ifcservices.tools.main_input``), else ifcdiff's ``old_version_id`` /
``new_version_id``, else the latest. The job records ``input_version_ids`` as ``{stored path: sha256}``
for every input, and none of the client's pin fields: the worker and the services read that map.

Given a project's view of the store (``access.scope``), the paths are looked for in the project's part
only (another project's file is "not found", as a missing one), outputs land in the project's
``output/<service>/``, and the fields and the map are then rewritten to full store keys
(``projects/<p>/...``): a job's record always holds store keys, whoever submitted it. ``find_input``
looks up one named file the same way (for the gateway's routes and an ifcpatch recipe's file arguments).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from access.scope import ProjectStorage, is_reserved, store_key
from contracts.files import PathRefused, input_candidates, output_path, resolve_input, resolve_output
from contracts.paths import Loc, PathRole, check_relative_path, path_fields
from storage.base import Storage, Version
from storage.local import LocalStorage

PIN_FIELDS = ("input_version_id", "old_version_id", "new_version_id")
# ifcdiff's own pins, by the field they pin.
_DIFF_PINS = {"old_file": "old_version_id", "new_file": "new_version_id"}


@dataclass(slots=True)
class _Input:
    loc: Loc
    owner: BaseModel
    name: str
    value: str  # as the request named it (checked by contracts.paths, not yet resolved)
    key: str = ""  # the stored path it resolved to


@dataclass(frozen=True, slots=True)
class _Pin:
    loc: Loc  # the pin field, for a 422
    version: str


def _refuse_hidden(loc: Loc, value: str) -> None:
    # The store's own folders (.versions, .incoming, .staging, ...) are never a request's file.
    if any(part.startswith(".") and part != "." for part in value.split("/")):
        raise PathRefused(loc, f"path {value!r} names a hidden folder or file of the store")


def _explicit_pin(model: BaseModel, item: _Input, main: bool) -> _Pin | None:
    """The pin the client asked for this input, by ifcpipeline's precedence; None for the latest."""
    by_name: dict[str, str] | None = getattr(model, "input_version_ids", None)
    for raw, version in (by_name or {}).items():
        try:
            named = check_relative_path(raw)
        except ValueError:
            continue  # names no file at all: it pins nothing
        if named in (item.value, item.key):
            return _Pin(("input_version_ids", raw), version)
    single = getattr(model, "input_version_id", None)
    if main and single:
        return _Pin(("input_version_id",), single)
    field = _DIFF_PINS.get(item.name) if item.owner is model else None
    diff_pin = getattr(model, field, None) if field else None
    if field and diff_pin:
        return _Pin((field,), diff_pin)
    return None


def _no_version(pin: _Pin, key: str) -> PathRefused:
    return PathRefused(pin.loc, f"no version {pin.version} of {key}")


def _collect(model: BaseModel, service: str, resolve_out: bool) -> list[_Input]:
    """Check and rewrite the outputs (when ``resolve_out``); the inputs, still to be looked up."""
    inputs = []
    for loc, role, owner, name in list(path_fields(model)):
        value = getattr(owner, name)
        _refuse_hidden(loc, value)
        if role is PathRole.input:
            inputs.append(_Input(loc, owner, name, value))
        elif resolve_out:
            setattr(owner, name, output_path(service, value))
    return inputs


def _main(inputs: list[_Input]) -> _Input | None:
    # The first input field; clash's ``previous`` (an earlier run's result) is never what a job is about.
    return next((i for i in inputs if i.loc[0] != "previous"), None)


def _record(model: BaseModel, pins: dict[str, str], record: bool) -> None:
    if not record:
        return
    if "input_version_ids" in type(model).model_fields:
        model.input_version_ids = pins or None  # type: ignore[attr-defined]
    for name in PIN_FIELDS:
        if name in type(model).model_fields:
            setattr(model, name, None)


def _add_pin(pins: dict[str, str], item: _Input, version: str) -> None:
    # One version per stored path is all the job's record (and a service's staging) can hold.
    earlier = pins.setdefault(item.key, version)
    if earlier != version:
        raise PathRefused(item.loc, f"{item.key} is pinned to two versions ({earlier} and {version}) in one "
                                    "request; a job reads one version of each file: upload the other under "
                                    "another name")


@dataclass(frozen=True, slots=True)
class _Local:
    """The local backend as a view sees it: its folder, its keys' prefix, the store under it."""

    root: Path  # the view's folder (the project's, or the store's)
    prefix: str  # of the view's keys in the store
    store: LocalStorage
    hides_projects: bool  # the default project's view: nothing under projects/ is its file

    def adopt(self, key: str) -> Version | None:
        return self.store.adopt(self.prefix + key)

    def local_path(self, key: str, version: str) -> Path | None:
        return self.store.local_path(self.prefix + key, version)


def _local_of(storage: Storage) -> _Local | None:
    """The local fast path of ``storage`` (the whole local store, or a view over it), else None."""
    if isinstance(storage, LocalStorage):
        return _Local(storage.root, "", storage, hides_projects=False)
    if isinstance(storage, ProjectStorage) and isinstance(storage.inner, LocalStorage):
        root = storage.local_root
        assert root is not None  # a view's folder on the local backend
        return _Local(root, storage.prefix, storage.inner, hides_projects=not storage.prefix)
    return None


def _local_input(local: _Local, value: str) -> str | None:
    # resolve_input follows every link and stays inside ``root``: a project's folder confines its
    # files; the default view's folder is the store's, whose projects/ it must not reach.
    if local.hides_projects and is_reserved(value):
        return None
    found = resolve_input(local.root, value)
    if found is None or (local.hides_projects and is_reserved(found)):
        return None
    return found


def _check_local(local: _Local, model: BaseModel, service: str, record: bool) -> None:
    """The local backend in one thread: the file system's own checks (links, folders), then pins."""
    root = local.root
    inputs = _collect(model, service, resolve_out=False)
    for loc, role, owner, name in list(path_fields(model)):
        if role is PathRole.output:
            value = getattr(owner, name)
            resolved = resolve_output(root, service, value)
            if resolved is None:
                raise PathRefused(loc, f"output path {value!r} leaves output/{service}/ or names a folder")
            setattr(owner, name, resolved)
    for item in inputs:
        found = _local_input(local, item.value)
        if found is None:
            raise PathRefused(item.loc, f"input file {item.value!r} not found in the data directory")
        item.key = found
    main, pins = _main(inputs), dict[str, str]()
    for item in inputs:
        pin = _explicit_pin(model, item, item is main)
        if pin is not None:
            if local.local_path(item.key, pin.version) is None:
                raise _no_version(pin, item.key)
            version = pin.version
        else:
            latest = local.adopt(item.key)
            if latest is None:  # removed since it was found
                raise PathRefused(item.loc, f"input file {item.value!r} not found in the data directory")
            version = latest.version
        setattr(item.owner, item.name, item.key)
        _add_pin(pins, item, version)
    _record(model, pins, record)


def _to_store_keys(storage: Storage, model: BaseModel, record: bool) -> None:
    """Every path field (and, once recorded, the pins' map) as the full store key of the view's key."""
    if not isinstance(storage, ProjectStorage) or not storage.prefix:
        return
    for _loc, _role, owner, name in list(path_fields(model)):
        setattr(owner, name, store_key(storage, getattr(owner, name)))
    pins = getattr(model, "input_version_ids", None)
    if record and pins:
        model.input_version_ids = {store_key(storage, k): v for k, v in pins.items()}  # type: ignore[attr-defined]


async def _resolve_stored(storage: Storage, model: BaseModel, item: _Input, main: bool) -> str:
    latest: str | None = None
    for candidate in input_candidates(item.value):
        found = await storage.stat(candidate)
        if found is not None:
            item.key, latest = candidate, found.version
            break
    if latest is None:
        raise PathRefused(item.loc, f"input file {item.value!r} not found in the store")
    pin = _explicit_pin(model, item, main)
    if pin is None:
        return latest
    if pin.version != latest and await storage.stat(item.key, pin.version) is None:
        raise _no_version(pin, item.key)
    return pin.version


async def check_paths(storage: Storage, model: BaseModel, service: str, *, record: bool = True) -> None:
    """Rewrite every path field of ``model`` in place to its stored path and pin its inputs;
    ``PathRefused`` names the first field refused (a missing input, an output outside
    ``output/<service>/``, a pin naming no version). ``record=False`` checks the pins but leaves the
    request's own pin fields (a workflow step pins when it starts, not when it is checked).
    ``storage`` a project's view (``access.scope.for_project``): looked up in the view, written back as
    full store keys."""
    local = _local_of(storage)
    if local is not None:
        await asyncio.to_thread(_check_local, local, model, service, record)
        _to_store_keys(storage, model, record)
        return
    inputs = _collect(model, service, resolve_out=True)
    main = _main(inputs)
    found = await asyncio.gather(*(_resolve_stored(storage, model, i, i is main) for i in inputs),
                                 return_exceptions=True)
    pins: dict[str, str] = {}
    for item, version in zip(inputs, found, strict=True):
        if isinstance(version, BaseException):
            raise version  # the first field in the request's order, as the local check names it
        setattr(item.owner, item.name, item.key)
        _add_pin(pins, item, version)
    _record(model, pins, record)
    _to_store_keys(storage, model, record)


async def find_input(storage: Storage, rel: str) -> str | None:
    """The stored path of the existing file ``rel`` names (as an operation's input is looked for:
    as named, in ``uploads/``, in the RQ-era output folders), or None. ``rel`` passed
    ``contracts.paths.check_relative_path``. In a project's view (``access.scope``) the path is the
    view's: found only inside the project (on the local backend no link leads out of its folder), and
    the default project's view finds nothing under ``projects/``."""
    hides_projects = isinstance(storage, ProjectStorage) and not storage.prefix
    if hides_projects and is_reserved(rel):
        return None
    root = storage.local_root
    if root is not None:
        found = resolve_input(root, rel)  # a few stats, as every submit does: no thread hop
        return None if found is None or (hides_projects and is_reserved(found)) else found
    for candidate in input_candidates(rel):
        if await storage.stat(candidate) is not None:
            return candidate
    return None
