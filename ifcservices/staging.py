"""Outputs appear whole or not at all: written in a hidden staging folder, then renamed into place.

The staging folder sits in the output's own folder, so the final ``os.replace`` is an atomic rename on
one filesystem, and files keep their final names while written (an OBJ names its MTL file inside).

A child killed mid-task (an abort, a timeout, a crash) never runs its own clean-up: each staging folder
is listed in the child's work folder before it is made, and the service removes what is listed once the
child has ended (``remove_listed``). What even that misses (the whole service killed) is swept by the
workers (``jobs.sweeper``).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING_PREFIX = ".staging-"
# In the child's work folder: one staging folder path per line.
STAGING_LIST = "staging.list"

_listing: Path | None = None  # set in a child process by list_staging_in


def list_staging_in(workdir: Path | None) -> None:
    """From now on, list every staging folder of this process in ``workdir`` (None: stop listing)."""
    global _listing
    _listing = workdir / STAGING_LIST if workdir is not None else None


def _new_staging_folder(parent: Path) -> Path:
    staging = parent / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
    if _listing is not None:
        # Listed before it exists: a kill between the two leaves a name without a folder, never a
        # folder nobody knows of.
        with _listing.open("a", encoding="utf-8") as listing:
            listing.write(f"{staging}\n")
    staging.mkdir(mode=0o700)
    return staging


@contextmanager
def staged_output(final: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Yield ``(temporary path, committed)``; on success every file written beside the temporary path
    is moved into ``final``'s folder (``final`` itself last) and listed in ``committed``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = _new_staging_folder(final.parent)
    committed: list[Path] = []
    try:
        yield staging / final.name, committed
        produced = sorted(p for p in staging.iterdir() if p.is_file())
        if staging / final.name not in produced:
            raise FileNotFoundError(f"the tool wrote no {final.name}")
        # Companions (an OBJ's MTL) first, so a reader that sees the main file finds them too.
        produced.sort(key=lambda p: p.name == final.name)
        for path in produced:
            target = final.parent / path.name
            os.replace(path, target)
            committed.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_listed(workdir: Path, data_dir: Path) -> list[Path]:
    """Remove the staging folders an ended child listed in ``workdir``; the ones that were still there.

    The list is written by the child, which parses untrusted models: only folders named like staging
    folders, inside the data directory, are removed, whatever else the list says.
    """
    listing = workdir / STAGING_LIST
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    root = Path(os.path.realpath(data_dir))
    removed: list[Path] = []
    for line in lines:
        path = Path(line)
        parent = Path(os.path.realpath(path.parent))
        if not path.name.startswith(STAGING_PREFIX) or (parent != root and root not in parent.parents):
            continue
        target = parent / path.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
            removed.append(target)
    return removed
