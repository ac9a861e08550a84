"""What the viewer shows of an IFC file's elements, read from its STEP text without ifcopenshell.

The gateway install stays slim (no ifcopenshell), and the viewer needs only a few facts per element:
class, name, storey and property sets. They are a handful of entity kinds, so one regular-expression
pass over the file finds them; geometry, the bulk of a model, is skipped unparsed.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any

# One instance: `#12=IFCWALL(...);`; strings may hold `;` and `)` (a quote inside is doubled).
_INSTANCE = re.compile(rb"#(\d+)\s*=\s*([A-Za-z0-9_]+)\s*\(((?:'(?:[^']|'')*'|[^;'])*)\)\s*;")
_TOKEN = re.compile(r"'((?:[^']|'')*)'|#(\d+)|\.([A-Za-z0-9_]+)\.|([A-Za-z0-9_]+)\(|(\()|(\))|(\$|\*)|([-+0-9.Ee]+)")
_ROOTED = re.compile(rb"\s*'[0-9A-Za-z_$]{22}'")
_X2 = re.compile(r"\\X2\\((?:[0-9A-F]{4})+)\\X0\\")
_X = re.compile(r"\\X\\([0-9A-F]{2})")
_RELATIONS = {
    b"IFCRELCONTAINEDINSPATIALSTRUCTURE", b"IFCRELAGGREGATES", b"IFCRELDEFINESBYPROPERTIES", b"IFCRELNESTS",
    b"IFCRELDEFINESBYTYPE",
}
_SETS = {b"IFCPROPERTYSET", b"IFCELEMENTQUANTITY"}
_VALUES = {
    b"IFCPROPERTYSINGLEVALUE", b"IFCQUANTITYLENGTH", b"IFCQUANTITYAREA", b"IFCQUANTITYVOLUME",
    b"IFCQUANTITYCOUNT", b"IFCQUANTITYWEIGHT", b"IFCQUANTITYTIME", b"IFCPROPERTYENUMERATEDVALUE",
}
_CLASSES_FILE = Path(__file__).resolve().parent / "viewer" / "ifc-classes.txt"
_CACHE_SIZE = 4


def _class_names() -> dict[str, str]:
    lines = _CLASSES_FILE.read_text(encoding="utf-8").splitlines()
    return {name.upper(): name for name in lines if name and not name.startswith("#")}


_CLASSES = _class_names()


class _Typed:
    """A typed value in the file, such as ``IFCLABEL('x')``: the viewer shows its value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _decode(text: str) -> str:
    """STEP's string escapes (ISO 10303-21 \\X2\\ UTF-16 runs and \\X\\ Latin-1 bytes)."""
    text = text.replace("''", "'")
    if "\\" not in text:
        return text
    text = _X2.sub(lambda m: bytes.fromhex(m.group(1)).decode("utf-16-be", "replace"), text)
    return _X.sub(lambda m: bytes.fromhex(m.group(1)).decode("latin-1"), text)


def parse_args(raw: str) -> list[Any]:
    """An instance's arguments as nested lists: str, ``('ref', id)`` tuples, numbers, None."""
    stack: list[list[Any]] = [[]]
    for m in _TOKEN.finditer(raw):
        text, ref, enum, typed, opening, closing, unset, number = m.groups()
        if text is not None:
            stack[-1].append(_decode(text))
        elif ref is not None:
            stack[-1].append(("ref", int(ref)))
        elif enum is not None:
            stack[-1].append(enum == "T" if enum in ("T", "F") else enum)
        elif typed is not None or opening is not None:
            stack.append([])
            if typed is not None:
                stack[-1].append(_Typed(None))  # marks the list as a typed value
        elif closing is not None and len(stack) > 1:
            inner = stack.pop()
            if inner and isinstance(inner[0], _Typed):
                stack[-1].append(_Typed(inner[1] if len(inner) > 1 else None))
            else:
                stack[-1].append(inner)
        elif unset is not None:
            stack[-1].append(None)
        elif number is not None:
            try:
                stack[-1].append(float(number) if any(c in number for c in ".Ee") else int(number))
            except ValueError:
                stack[-1].append(number)
    return stack[0]


def _plain(value: Any) -> Any:
    if isinstance(value, _Typed):
        return _plain(value.value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return None
    return value


def _refs(value: Any) -> list[int]:
    return [v[1] for v in value if isinstance(v, tuple)] if isinstance(value, list) else []


@dataclass
class ModelIndex:
    """Class, name and storey of each rooted element; property sets read one element at a time.

    Property values are most of a big model's non-geometry entities (a hundred per element), so they
    are kept unparsed and parsed only for the element the viewer picks.
    """

    elements: dict[str, dict[str, Any]] = field(default_factory=dict)
    storeys: list[dict[str, Any]] = field(default_factory=list)
    sets_of: dict[str, list[int]] = field(default_factory=dict)
    raw: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The viewer's element table: everything but the property sets."""
        return {"elements": self.elements, "storeys": self.storeys}

    def property_sets(self, global_id: str) -> dict[str, dict[str, Any]]:
        """The element's property and quantity sets: name -> property -> value."""
        psets: dict[str, dict[str, Any]] = {}
        for set_id in self.sets_of.get(global_id, []):
            set_kind, set_args = self._parsed(set_id)
            if set_kind not in _SETS or len(set_args) < 5:
                continue
            props = [_property(*self._parsed(p)) for p in _refs(set_args[-1]) if p in self.raw]
            psets[str(set_args[2])] = dict(p for p in props if p is not None)
        return psets

    def _parsed(self, entity: int) -> tuple[bytes, list[Any]]:
        kind, raw = self.raw.get(entity, (b"", b""))
        return kind, parse_args(raw.decode("utf-8", "replace"))


def _scan(data: bytes) -> tuple[dict[int, tuple[bytes, str]], dict[int, tuple[bytes, list[Any]]],
                                dict[int, tuple[bytes, bytes]]]:
    rooted: dict[int, tuple[bytes, str]] = {}
    relations: dict[int, tuple[bytes, list[Any]]] = {}
    raw_props: dict[int, tuple[bytes, bytes]] = {}
    for m in _INSTANCE.finditer(data):
        kind, raw = m.group(2).upper(), m.group(3)
        if kind in _SETS or kind in _VALUES:
            raw_props[int(m.group(1))] = (kind, raw)
        elif kind in _RELATIONS:
            relations[int(m.group(1))] = (kind, parse_args(raw.decode("utf-8", "replace")))
        elif _ROOTED.match(raw):
            rooted[int(m.group(1))] = (kind, raw.decode("utf-8", "replace"))
    return rooted, relations, raw_props


def _property(kind: bytes, args: list[Any]) -> tuple[str, Any] | None:
    if not args or not isinstance(args[0], str):
        return None
    if kind == b"IFCPROPERTYSINGLEVALUE":
        return args[0], _plain(args[2]) if len(args) > 2 else None
    if kind == b"IFCPROPERTYENUMERATEDVALUE":
        return args[0], _plain(args[2]) if len(args) > 2 else None
    return args[0], _plain(args[3]) if len(args) > 3 else None


def build_index(path: Path) -> ModelIndex:
    """Read ``path`` (an IFC STEP file) into the viewer's index."""
    rooted, others, raw_props = _scan(path.read_bytes())
    parsed = {i: (kind, parse_args(raw)) for i, (kind, raw) in rooted.items()}
    gid = {i: args[0] for i, (_, args) in parsed.items() if args and isinstance(args[0], str)}
    parent: dict[int, int] = {}
    sets_of: dict[int, list[int]] = {}
    type_of: dict[int, int] = {}
    for kind, args in others.values():
        if len(args) < 6:
            continue
        if kind == b"IFCRELCONTAINEDINSPATIALSTRUCTURE":
            for child in _refs(args[4]):
                parent[child] = args[5][1] if isinstance(args[5], tuple) else 0
        elif kind in (b"IFCRELAGGREGATES", b"IFCRELNESTS"):
            for child in _refs(args[5]):
                parent.setdefault(child, args[4][1] if isinstance(args[4], tuple) else 0)
        elif kind == b"IFCRELDEFINESBYPROPERTIES" and isinstance(args[5], tuple):
            for obj in _refs(args[4]):
                sets_of.setdefault(obj, []).append(args[5][1])
        elif kind == b"IFCRELDEFINESBYTYPE" and isinstance(args[5], tuple):
            for obj in _refs(args[4]):
                type_of[obj] = args[5][1]
    # A type's sets (IfcTypeObject.HasPropertySets) come first: the occurrence's own, read later, win.
    for obj, type_id in type_of.items():
        type_args = parsed.get(type_id, (b"", []))[1]
        if len(type_args) > 5:
            sets_of[obj] = _refs(type_args[5]) + sets_of.get(obj, [])

    index = ModelIndex(raw=raw_props)
    storey_ids = {i for i, (kind, _) in parsed.items() if kind == b"IFCBUILDINGSTOREY"}
    for i in sorted(storey_ids):
        args = parsed[i][1]
        elevation = _plain(args[9]) if len(args) > 9 else None
        index.storeys.append({"global_id": gid.get(i), "name": _plain(args[2]) if len(args) > 2 else None,
                              "elevation": elevation if isinstance(elevation, int | float) else None})
    index.storeys.sort(key=lambda s: (s["elevation"] is None, s["elevation"] or 0))
    for i, (kind, args) in parsed.items():
        if i not in gid:
            continue
        storey, seen, up = None, 0, parent.get(i)
        while up and seen < 16:  # walk up aggregations (a stair's flights, a wall's parts) to a storey
            if up in storey_ids:
                storey = gid.get(up)
                break
            up, seen = parent.get(up), seen + 1
        name = args[2] if len(args) > 2 and isinstance(args[2], str) else None
        ifc_class = _CLASSES.get(kind.decode(), kind.decode().title())
        index.elements[gid[i]] = {"class": ifc_class, "name": name, "storey": storey}
        if i in sets_of:
            index.sets_of[gid[i]] = sets_of[i]
    return index


class IndexCache:
    """The last few models' indexes, keyed by path and modification time (a rewritten file is re-read)."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int, int], ModelIndex] = OrderedDict()
        self._lock = Lock()

    def get(self, path: Path) -> ModelIndex:
        """The index of ``path``, built on first use (callers run this in a thread)."""
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        index = build_index(path)
        with self._lock:
            self._items[key] = index
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return index
