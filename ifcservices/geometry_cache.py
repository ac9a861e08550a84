"""The geometry cache of the IFC services: tessellated shapes of a model, kept on disk between jobs.

Clash and convert spend most of their time tessellating (ifcopenshell's iterator); the clash tree
itself is built in a fraction of that. An entry holds the triangulation and placement of every element
an iterator yielded for one model under one set of geometry settings, so a later job on the same bytes
rebuilds its shapes from the entry instead (``ifcservices.cached_shapes``).

An entry is named by the sha256 of (the input's bytes, every geometry setting, the geometry library,
ifcopenshell's version, this format's version): it can never serve geometry of other bytes or other
settings, and the key is stored inside the entry too, checked on every read. Entries are written to a
temporary file and renamed into place, so several child processes (convert and clash services sharing
the data directory) can read and write at once; readers see a whole entry or none. Past the byte bound
the least recently used entries (by modification time, touched on every hit) are removed. An entry
that cannot be read for any reason is a miss, and is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from settings import get_settings

FORMAT = 2
SUFFIX = ".npz"
_TEMP_PREFIX = ".tmp-"
# A temporary file older than this was left by a killed child: removed at the next eviction.
_STALE_TEMP_SECONDS = 3600
# The per-geometry arrays of an entry, in this order in its offsets table.
ARRAYS: tuple[tuple[str, type[np.generic]], ...] = (
    ("verts", np.float64),
    ("faces", np.int32),
    ("edges", np.int32),
    ("normals", np.float64),
    ("uvs", np.float64),
    ("item_ids", np.int32),
    ("edges_item_ids", np.int32),
    ("material_ids", np.int32),
)


@dataclass
class ElementShape:
    """One yielded element: what ``ifcopenshell.geom`` says of it, and which geometry it has."""

    id: int
    parent_id: int
    name: str
    type: str
    guid: str
    context: str
    geometry: int  # index into ``ShapeSet.geometries``
    matrix: list[float]  # the placement, 16 numbers, column-major as ``transformation.matrix``


@dataclass
class Geometry:
    """One triangulation: its representation's entity and id, its arrays (see ``ARRAYS``), and its
    styles (``cached_shapes`` says what each holds) that ``material_ids`` index."""

    entity: str
    id: str
    arrays: dict[str, npt.NDArray[Any]]
    styles: list[list[Any]] = field(default_factory=list)


@dataclass
class ShapeSet:
    """What iterators yielded for a model: ``covered`` are the products they were asked for, ``empty``
    those that came out with no vertices (in ``elements`` too, with empty arrays); a covered product
    not in ``elements`` produced no geometry at all."""

    covered: set[int] = field(default_factory=set)
    empty: set[int] = field(default_factory=set)
    elements: dict[int, ElementShape] = field(default_factory=dict)
    geometries: list[Geometry] = field(default_factory=list)

    def nbytes(self) -> int:
        return sum(a.nbytes for g in self.geometries for a in g.arrays.values())

    def merge(self, other: ShapeSet) -> ShapeSet:
        """This set with ``other``'s products added (``other`` wins where both have one)."""
        merged = ShapeSet(covered=self.covered | other.covered, geometries=list(self.geometries))
        merged.empty = (self.empty - other.covered) | other.empty
        merged.elements = {k: v for k, v in self.elements.items() if k not in other.covered}
        shift = len(self.geometries)
        merged.geometries.extend(other.geometries)
        for key, element in other.elements.items():
            merged.elements[key] = ElementShape(**{**element.__dict__, "geometry": element.geometry + shift})
        return merged


def _pack(key: str, shapes: ShapeSet) -> dict[str, npt.NDArray[Any]]:
    meta = {
        "format": FORMAT,
        "key": key,
        "covered": sorted(shapes.covered),
        "empty": sorted(shapes.empty),
        "geometries": [[g.entity, g.id, g.styles] for g in shapes.geometries],
        "elements": [list(e.__dict__.values()) for e in shapes.elements.values()],
    }
    offsets = np.zeros((len(shapes.geometries) + 1, len(ARRAYS)), dtype=np.int64)
    for i, geometry in enumerate(shapes.geometries):
        offsets[i + 1] = offsets[i] + [len(geometry.arrays[name]) for name, _ in ARRAYS]
    packed: dict[str, npt.NDArray[Any]] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        "offsets": offsets,
    }
    for name, dtype in ARRAYS:
        parts = [g.arrays[name] for g in shapes.geometries]
        packed[name] = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)
    return packed


def _unpack(key: str, data: Any) -> ShapeSet:
    meta = json.loads(bytes(data["meta"]).decode())
    if meta["format"] != FORMAT or meta["key"] != key:
        raise ValueError("entry of another key or format")
    offsets = data["offsets"]
    columns = {name: data[name] for name, _ in ARRAYS}
    geometries = []
    for i, (entity, geometry_id, styles) in enumerate(meta["geometries"]):
        arrays = {name: columns[name][offsets[i, j]:offsets[i + 1, j]] for j, (name, _) in enumerate(ARRAYS)}
        geometries.append(Geometry(str(entity), str(geometry_id), arrays, list(styles)))
    elements = {}
    for row in meta["elements"]:
        element = ElementShape(*row)
        if not 0 <= element.geometry < len(geometries) or len(element.matrix) != 16:
            raise ValueError("entry refers to a geometry it does not have")
        elements[element.id] = element
    return ShapeSet(covered=set(meta["covered"]), empty=set(meta["empty"]), elements=elements, geometries=geometries)


_digests: dict[tuple[str, int, int, int], str] = {}


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes (remembered for this process while the file is unchanged)."""
    stat = path.stat()
    memo = (os.fspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if (known := _digests.get(memo)) is not None:
        return known
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    _digests[memo] = digest.hexdigest()
    return _digests[memo]


def settings_values(settings: Any) -> dict[str, str]:
    """Every geometry setting and its value (unset ones as such), as text: part of an entry's key."""
    values = {}
    for name in settings.setting_names():
        try:
            values[name] = repr(settings.get(name))
        except RuntimeError:  # "Setting not set": the kernel's default applies
            values[name] = "<unset>"
    return values


def entry_key(digest: str, settings: Any, library: str) -> str:
    """The name of the entry for a model's bytes (``digest``) under ``settings`` and ``library``."""
    material = {
        "format": FORMAT,
        "content_sha256": digest,
        "ifcopenshell": package_version("ifcopenshell"),
        "geometry_library": library,
        "settings": settings_values(settings),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@dataclass
class CacheStats:
    """What a job did with the cache: lookups answered whole, lookups that had to tessellate, entries written."""

    hits: int = 0
    misses: int = 0
    stored: int = 0

    def as_result(self) -> dict[str, int]:
        return dict(self.__dict__)


class GeometryCache:
    """Entries in ``directory``, at most ``max_bytes`` together (0: the cache is off)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.stats = CacheStats()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @classmethod
    def configured(cls, data_dir: Path, default_dir: Path | None = None) -> GeometryCache:
        """The cache as the settings say (``IFCFLOW_GEOMETRY_CACHE_BYTES``, ``IFCFLOW_GEOMETRY_CACHE_DIR``;
        by default ``default_dir``, else ``<data dir>/.cache/geometry``, hidden from file listings). On
        the S3 backend a job's data directory is its own scratch folder, removed after it: the service
        passes a ``default_dir`` that outlives it."""
        settings = get_settings()
        directory = settings.geometry_cache_dir or default_dir or data_dir / ".cache" / "geometry"
        return cls(directory, settings.geometry_cache_bytes)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def load(self, key: str) -> ShapeSet | None:
        """The entry of ``key``, or None (absent, unreadable, or of another key: then removed)."""
        if not self.enabled:
            return None
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                shapes = _unpack(key, data)
        except FileNotFoundError:
            return None
        except Exception:  # truncated, not a zip, wrong arrays: whatever it is, a miss
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used
        return shapes

    def store(self, key: str, shapes: ShapeSet) -> bool:
        """Write the entry of ``key`` (whole, by rename), then evict past the bound; False if it does
        not fit the bound at all."""
        if not self.enabled:
            return False
        buffer = io.BytesIO()
        np.savez(buffer, **_pack(key, shapes))  # type: ignore[arg-type]  # numpy's stubs want positional arrays
        if buffer.tell() > self.max_bytes:
            return False
        temporary = self.directory / f"{_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        try:  # a full disk or a read-only directory costs the cache, never the job
            self.directory.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(buffer.getbuffer())
            os.replace(temporary, self.path(key))
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
            return False
        self.stats.stored += 1
        self.evict(keep=key)
        return True

    def evict(self, keep: str | None = None) -> list[Path]:
        """Remove least recently used entries until the rest fit ``max_bytes``; never ``keep``'s."""
        entries: list[tuple[float, int, Path]] = []
        now = time.time()
        try:
            listing = list(os.scandir(self.directory))
        except OSError:
            return []
        for item in listing:
            try:
                stat = item.stat()
            except OSError:
                continue  # removed by another process meanwhile
            if item.name.startswith(_TEMP_PREFIX):
                if now - stat.st_mtime > _STALE_TEMP_SECONDS:
                    with contextlib.suppress(OSError):
                        os.unlink(item.path)
            elif item.name.endswith(SUFFIX):
                entries.append((stat.st_mtime, stat.st_size, Path(item.path)))
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if keep is not None and path.name == f"{keep}{SUFFIX}":
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
            total -= size  # gone either way: removed here or by another process
        return removed
