"""Result caching: the same operation with the same options on inputs with the same bytes (not names)
reuses the earlier result at once, its output files copied through the store to where this job wants
them. Inputs count by the version they read (the job's pin, else the latest's sha256), outputs by the
version they were left as: both from the store (``storage``), so the cache works on either backend.
A hit never crosses projects: the projects of the request's paths (full store keys, ``projects/<p>/...``)
are part of the key, so project B with the same bytes as project A misses A's entry."""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Any

from arq import ArqRedis

from access.grants import DEFAULT_PROJECT
from access.scope import project_of_key
from contracts.operations import Operation
from contracts.paths import PathRole, path_fields
from contracts.requests import REQUEST_MODELS
from storage import NotFound, Storage
from store import keys

# Pins name the versions the inputs stand for in the key already: the pin fields themselves would only
# tell apart requests on the same bytes under other names.
_PIN_FIELDS = ("input_version_ids", "input_version_id")


async def input_version(storage: Storage, pins: dict[str, str], key: str) -> str | None:
    """The version (sha256) input ``key`` reads: its pin, else its latest; None when it has none."""
    if key in pins:
        return pins[key]
    found = await storage.stat(key)
    return None if found is None else found.version


def _set(tree: Any, loc: tuple[str | int, ...], value: Any) -> None:
    for part in loc[:-1]:
        tree = tree[part]
    tree[loc[-1]] = value


async def cache_key(
    storage: Storage, op: Operation, request: dict[str, Any]
) -> tuple[str | None, dict[str, str]]:
    """The cache key (output paths left out, inputs by the sha256 of the version they read), and this
    request's outputs by field; the key is None when an input has no version (the service says why)."""
    model = REQUEST_MODELS[op].model_validate(request)
    shape = model.model_dump(mode="json", by_alias=True)
    pins = dict(getattr(model, "input_version_ids", None) or {})
    for name in _PIN_FIELDS:
        if name in shape:
            shape[name] = None
    outputs: dict[str, str] = {}
    missing = False
    projects: set[str] = set()
    for loc, role, owner, name in path_fields(model):
        value = getattr(owner, name)
        projects.add(project_of_key(value))
        if role is PathRole.output:
            outputs[json.dumps(loc)] = value
            _set(shape, loc, None)
        elif (version := await input_version(storage, pins, value)) is None:
            missing = True
        else:
            _set(shape, loc, version)
    if missing:
        return None, outputs
    # The default project's keys stay as they were before projects existed (its entries still hit).
    scope = [op.value, shape] if projects <= {DEFAULT_PROJECT} else [op.value, shape, sorted(projects)]
    key = hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()
    return key, outputs


async def _unchanged(storage: Storage, rel: str, recorded: dict[str, Any]) -> bool:
    """Whether ``rel``'s latest version is still the one recorded when the entry was stored."""
    found = await storage.stat(rel)
    return found is not None and found.version == recorded.get("sha256") and found.size == recorded.get("size")


async def reuse(
    redis: ArqRedis, storage: Storage, key: str, outputs: dict[str, str]
) -> dict[str, Any] | None:
    """The cached result rewritten for this job's output paths, or None (a miss).

    Every cached output must still hold the bytes it had when the entry was stored (its latest version
    has the recorded sha256 and size): one overwritten by another job, or removed, makes a miss and
    drops the entry, so a hit never gives another model's bytes as this job's result. An output wanted
    under another name is copied through the store, a new version of that name, on either backend.
    """
    raw = await redis.get(keys.RESULT_CACHE + key)
    if raw is None:
        return None
    entry = json.loads(raw)
    renames: dict[str, str] = {}
    for loc, old in entry["outputs"].items():
        new = outputs.get(loc)
        if new is None:
            return None
        renames[old] = new
        old_stem, new_stem = str(PurePosixPath(old).with_suffix("")), str(PurePosixPath(new).with_suffix(""))
        for other in entry["result"].get("output_files", []):
            if other not in entry["outputs"].values() and other.startswith(old_stem):
                renames[other] = new_stem + other[len(old_stem):]  # e.g. model.mtl beside model.obj
    files: dict[str, dict[str, Any]] = entry.get("files") or {}
    # An entry from before outputs were recorded cannot be checked: a miss like a changed output.
    for old in renames:
        if old not in files or not await _unchanged(storage, old, files[old]):
            await redis.delete(keys.RESULT_CACHE + key)
            return None
    for old, new in renames.items():
        if old != new:
            recorded = files[old]
            try:
                await storage.receive(new, storage.read(old, recorded["sha256"]), int(recorded["size"]))
            except NotFound:  # removed since the check: a miss like any changed output
                await redis.delete(keys.RESULT_CACHE + key)
                return None
    text = json.dumps(entry["result"])
    for old, new in renames.items():
        text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    return {**json.loads(text), "cached": True}


async def remember(
    redis: ArqRedis, storage: Storage, key: str, outputs: dict[str, str], result: dict[str, Any], ttl: int
) -> None:
    """Store ``result`` under ``key`` with each output's version (sha256) and size, which ``reuse`` checks."""
    files: dict[str, dict[str, Any]] = {}
    for rel in {*outputs.values(), *result.get("output_files", [])}:
        found = await storage.stat(rel)
        if found is None:
            return  # an output already gone: nothing to reuse
        files[rel] = {"sha256": found.version, "size": found.size}
    entry = {"result": result, "outputs": outputs, "files": files}
    await redis.set(keys.RESULT_CACHE + key, json.dumps(entry), ex=ttl)
