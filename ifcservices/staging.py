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
import resource
import secrets
import shutil
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from contracts.storage_full import STORAGE_FULL_ERRNOS, storage_full_reason
from ifcservices.errors import OutputIncomplete, ServiceError, StorageFull, is_storage_full

STAGING_PREFIX = ".staging-"
# In the child's work folder: one staging folder path per line.
STAGING_LIST = "staging.list"
_GLB_HEADER = struct.Struct("<4sII")  # magic, version, length of the whole file
_PROBE_BYTES = 4096  # one block: what any further write would need
_LOW_SPACE_BYTES = 64 * 1024 * 1024  # an empty output with less free than this: the disk is the likely cause

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


def _label(final: Path, root: Path | None) -> str:
    """``final`` as clients name it (``output/ifcconvert/model.glb``), never the server's absolute path."""
    if root is not None:
        try:
            return final.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return final.name


def _storage_full(label: str, error: BaseException | None = None) -> StorageFull:
    return StorageFull(f"storage full: {storage_full_reason(error)} writing {label}")


def _room_left(folder: Path) -> bool:
    """Whether one more block fits in ``folder``'s file system. ifcopenshell's C++ writers do not raise
    when a write fails, so a file they cut short on a full disk looks whole: what gives it away is that
    the disk is still full right after them."""
    probe = folder / ".space-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            return os.write(fd, bytes(_PROBE_BYTES)) == _PROBE_BYTES
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno in STORAGE_FULL_ERRNOS:
            return False
        raise
    finally:
        probe.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    # Network file systems and quotas report a failed write only here, not in write() itself.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def _problem(main: Path) -> tuple[str, int] | None:
    """What is wrong with a finished output its writer reported as written, and how many more bytes
    it would have needed (0: unknown); None when it looks whole."""
    size = main.stat().st_size
    if size == 0:
        return f"the tool wrote an empty {main.name}", 0
    if main.suffix.lower() == ".glb":
        with main.open("rb") as f:
            header = f.read(_GLB_HEADER.size)
        if len(header) < _GLB_HEADER.size:
            return f"{main.name} is {size} bytes, shorter than a glTF header", 0
        magic, _version, declared = _GLB_HEADER.unpack(header)
        if magic != b"glTF" or declared != size:
            return f"{main.name} is {size} bytes but its header declares {declared}", max(0, declared - size)
    return None


def _check_and_commit(staging: Path, final: Path, committed: list[Path], label: str) -> None:
    produced = sorted(p for p in staging.iterdir() if p.is_file())
    try:
        for path in produced:
            _fsync(path)
    except OSError as exc:
        if exc.errno in STORAGE_FULL_ERRNOS:
            raise _storage_full(label, exc) from exc
        raise
    limit = _size_limit()
    if limit is not None and any(p.stat().st_size >= limit for p in produced):
        # The writer hit RLIMIT_FSIZE (EFBIG): the file is cut at exactly the limit.
        raise StorageFull(f"storage full: file size limit of {limit} bytes reached writing {label}")
    main = staging / final.name
    if not _room_left(staging):
        raise _storage_full(label)
    if main not in produced:
        raise FileNotFoundError(f"the tool wrote no {final.name}")
    if (problem := _problem(main)) is not None:
        reason, missing = problem
        free = _free_bytes(staging)
        # A writer that failed on a full disk may leave room behind (it gave up on one big write):
        # storage full when what was missing could not have fitted, or, size unknown, when little is left.
        if free < missing or (missing == 0 and free < _LOW_SPACE_BYTES):
            raise StorageFull(f"storage full: no space left on device writing {label} ({reason})")
        raise OutputIncomplete(f"output incomplete: {reason} (writing {label})")
    # Companions (an OBJ's MTL) first, so a reader that sees the main file finds them too.
    produced.sort(key=lambda p: p.name == final.name)
    for path in produced:
        target = final.parent / path.name
        os.replace(path, target)
        committed.append(target)


@contextmanager
def staged_output(final: Path, root: Path | None = None) -> Iterator[tuple[Path, list[Path]]]:
    """Yield ``(temporary path, committed)``; on success every file written beside the temporary path
    is moved into ``final``'s folder (``final`` itself last) and listed in ``committed``.

    Nothing is committed that is not whole: a write that failed on a full disk (or a quota, or the
    file-size limit), a disk still full after the tool (its C++ writers fail silently), an empty main
    file or a ``.glb`` shorter than its header declares raise ``StorageFull`` or ``OutputIncomplete``,
    and the staging folder with its partial files is removed.
    """
    label = _label(final, root)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = _new_staging_folder(final.parent)
    except OSError as exc:
        if exc.errno in STORAGE_FULL_ERRNOS:
            raise _storage_full(label, exc) from exc
        raise
    committed: list[Path] = []
    try:
        try:
            yield staging / final.name, committed
        except StorageFull:
            raise
        except ServiceError as exc:
            # A tool's own error for a failed write (fetch's "download failed") still names its cause.
            if is_storage_full(exc):
                raise _storage_full(label, exc) from exc
            raise
        except Exception as exc:
            # Libraries wrap a failed write in their own errors; a disk still full says what happened.
            if is_storage_full(exc) or not _room_left(staging):
                raise _storage_full(label, exc) from exc
            raise
        _check_and_commit(staging, final, committed, label)
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
