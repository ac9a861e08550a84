"""Result caching: the same operation with the same options on inputs with the same bytes (not names)
reuses the earlier result at once, its output files linked or copied to where this job wants them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from arq import ArqRedis

from contracts.operations import Operation
from contracts.paths import PathRole, path_fields
from contracts.requests import REQUEST_MODELS
from store import keys


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


async def content_hash(redis: ArqRedis, data_dir: Path, rel: str) -> str:
    """sha256 of a data-dir file's bytes, remembered by path, size, mtime, ctime and inode."""
    path = data_dir / rel
    st = await asyncio.to_thread(path.stat)
    # ctime and the inode change on every rewrite or rename onto the path, even one that restores
    # size and mtime (a copy with copy2, os.utime): a remembered hash is never another file's.
    stamp = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
    key = keys.FILE_HASH + hashlib.sha1(rel.encode(), usedforsecurity=False).hexdigest()
    known = await redis.get(key)
    if known and known.decode().startswith(stamp + ":"):
        return str(known.decode().rsplit(":", 1)[1])
    digest = await asyncio.to_thread(_file_digest, path)
    await redis.set(key, f"{stamp}:{digest}", ex=30 * 86400)
    return digest


def _set(tree: Any, loc: tuple[str | int, ...], value: Any) -> None:
    for part in loc[:-1]:
        tree = tree[part]
    tree[loc[-1]] = value


async def cache_key(
    redis: ArqRedis, data_dir: Path, op: Operation, request: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    """The cache key (output paths left out, inputs by content), and this request's outputs by field."""
    model = REQUEST_MODELS[op].model_validate(request)
    shape = model.model_dump(mode="json", by_alias=True)
    outputs: dict[str, str] = {}
    for loc, role, owner, name in path_fields(model):
        value = getattr(owner, name)
        if role is PathRole.output:
            outputs[json.dumps(loc)] = value
            _set(shape, loc, None)
        else:
            _set(shape, loc, await content_hash(redis, data_dir, value))
    key = hashlib.sha256(json.dumps([op.value, shape], sort_keys=True).encode()).hexdigest()
    return key, outputs


def _place(src: Path, dest: Path) -> None:
    """Put ``src``'s bytes at ``dest`` atomically: a hard link where possible, else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".cache-")
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dest)


async def _unchanged(redis: ArqRedis, data_dir: Path, rel: str, recorded: dict[str, Any]) -> bool:
    """Whether ``rel`` still holds the bytes recorded when the entry was stored (size first: cheap)."""
    try:
        size = (await asyncio.to_thread((data_dir / rel).stat)).st_size
        if size != recorded.get("size"):
            return False
        return await content_hash(redis, data_dir, rel) == recorded.get("sha256")
    except OSError:  # gone, or no longer a readable file
        return False


async def reuse(
    redis: ArqRedis, data_dir: Path, key: str, outputs: dict[str, str]
) -> dict[str, Any] | None:
    """The cached result rewritten for this job's output paths, or None (a miss).

    Every cached output must still hold the bytes it had when the entry was stored (sha256 and size):
    one overwritten by another job, or removed, makes a miss and drops the entry, so a hit never links
    another model's bytes as this job's result.
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
        if old not in files or not await _unchanged(redis, data_dir, old, files[old]):
            await redis.delete(keys.RESULT_CACHE + key)
            return None
    for old, new in renames.items():
        if old != new:
            await asyncio.to_thread(_place, data_dir / old, data_dir / new)
    text = json.dumps(entry["result"])
    for old, new in renames.items():
        text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    return {**json.loads(text), "cached": True}


async def remember(
    redis: ArqRedis, data_dir: Path, key: str, outputs: dict[str, str], result: dict[str, Any], ttl: int
) -> None:
    """Store ``result`` under ``key`` with each output's sha256 and size, which ``reuse`` checks."""
    files: dict[str, dict[str, Any]] = {}
    for rel in {*outputs.values(), *result.get("output_files", [])}:
        try:
            size = (await asyncio.to_thread((data_dir / rel).stat)).st_size
            files[rel] = {"sha256": await content_hash(redis, data_dir, rel), "size": size}
        except OSError:
            return  # an output already gone: nothing to reuse
    entry = {"result": result, "outputs": outputs, "files": files}
    await redis.set(keys.RESULT_CACHE + key, json.dumps(entry), ex=ttl)
