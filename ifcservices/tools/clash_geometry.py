"""ifcclash's Clasher, told how many geometry threads to use and what it could not put in its tree.

ifcclash's own ``add_collision_objects`` uses every core of the machine whatever else runs, asserts that
at least one element has geometry, and leaves the elements whose shape fails out of the clash test
without a word. This one does the same selection, uses the job's threads, and records each element
that produced no geometry (or one the tree refused) with its error, for the job's result.

Its shapes come from the geometry cache (``ifcservices.geometry_cache``) where an entry for the model's
bytes and these geometry settings covers them, and what had to be tessellated is added to the entry:
a second clash of a model rebuilds the tree from stored triangulations instead of tessellating again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.util.selector
from ifcclash.ifcclash import Clasher, ClashSettings, ClashSource

from ifcservices.cached_shapes import Recorder, rebuild
from ifcservices.context import current_task
from ifcservices.geometry_cache import GeometryCache, ShapeSet, content_digest, entry_key
from ifcservices.limits import is_out_of_memory_error
from ifcservices.skipped import Skipped, error_text
from ifcservices.tools import geometry_report

# ifcclash's iterator runs on ifcopenshell's default geometry library.
LIBRARY = "opencascade"


def _selected(ifc_file: ifcopenshell.file, source: ClashSource) -> set[Any]:
    """The elements of a clash source, as ifcclash selects them."""
    mode, selector = source.get("mode"), source.get("selector")
    elements = set(ifc_file.by_type("IfcElement")) - set(ifc_file.by_type("IfcFeatureElement"))
    if not mode or mode == "a" or not selector:
        return elements
    chosen = set(ifcopenshell.util.selector.filter_elements(ifc_file, selector))
    return elements - chosen if mode == "e" else chosen


def _task_cache() -> GeometryCache:
    task = current_task()
    return task.geometry_cache() if task is not None else GeometryCache(Path(), 0)


class ReportingClasher(Clasher):  # type: ignore[misc]  # ifcclash has no type hints
    def __init__(self, settings: ClashSettings, threads: int, cache: GeometryCache | None = None) -> None:
        super().__init__(settings)
        self.threads = threads
        self.skipped = Skipped()
        # Elements with a representation that the sets asked for (once each, whichever side).
        self.attempted: set[tuple[str, int]] = set()
        self.cache = cache if cache is not None else _task_cache()
        self._entries: dict[str, ShapeSet] = {}  # this job's entries, by key: read once per job

    def add_collision_objects(self, name: str, ifc_file: ifcopenshell.file, source: ClashSource) -> None:
        assert self.tree is not None  # process_clash_set makes it before adding objects
        elements = _selected(ifc_file, source)
        yielded: set[int] = set()
        empty: set[int] = set()
        if elements:
            self._shapes(ifc_file, Path(source["file"]), elements, empty,
                         lambda shape: self._add(ifc_file.by_id(shape.id), shape, yielded))
        expected = sorted((e for e in elements if e.Representation is not None), key=lambda e: e.id())
        self.attempted.update((str(e.GlobalId), e.id()) for e in expected)
        geometry_report.without_geometry(self.geom_settings, expected, yielded, empty, into=self.skipped)
        self.groups[name]["elements"].update({e.GlobalId: e for e in elements if e.id() in yielded})

    def _shapes(
        self, ifc_file: ifcopenshell.file, path: Path, elements: set[Any], empty: set[int], use: Callable[[Any], None]
    ) -> None:
        """Hand ``use`` the non-empty shape of each of ``elements`` (cached or tessellated now); the ids
        of those that came out empty go into ``empty``."""
        if not self.cache.enabled:
            self._tessellate(ifc_file, elements, empty, use, None)
            return
        key = entry_key(content_digest(path), self.geom_settings, LIBRARY)
        cached = self._entries.get(key) or self.cache.load(key)
        ids = {e.id() for e in elements}
        need = ids
        if cached is not None:
            have = ids & cached.covered
            wanted = [i for i in cached.elements if i in have and i not in cached.empty]
            shapes, failed = rebuild(self.geom_settings, ifc_file, cached, wanted)
            for shape in shapes:
                use(shape)
            empty.update(have & cached.empty)
            need = (ids - cached.covered) | failed
        if not need and cached is not None:
            self.cache.stats.hits += 1
            self._entries[key] = cached
            return
        self.cache.stats.misses += 1
        recorder = Recorder(need, self.cache.max_bytes)
        self._tessellate(ifc_file, {e for e in elements if e.id() in need}, empty, use, recorder)
        if (fresh := recorder.result()) is not None:
            merged = cached.merge(fresh) if cached is not None else fresh
            self._entries[key] = merged
            self.cache.store(key, merged)

    def _tessellate(
        self, ifc_file: ifcopenshell.file, elements: set[Any], empty: set[int], use: Callable[[Any], None],
        recorder: Recorder | None,
    ) -> None:
        iterator = ifcopenshell.geom.iterator(self.geom_settings, ifc_file, self.threads, include=list(elements))
        if not iterator.initialize():  # False: no element has geometry (ifcclash asserts here)
            return
        while True:
            shape = iterator.get()  # type: ignore[no-untyped-call]
            if geometry_report.is_empty(shape):
                empty.add(shape.id)
                if recorder is not None:
                    recorder.add_empty(shape)
            else:
                if recorder is not None:
                    recorder.add(shape)
                use(shape)
            if not iterator.next():
                break

    def _add(self, element: Any, shape: Any, yielded: set[int]) -> None:
        try:
            self.tree.add_element(shape)
        except Exception as exc:  # a shape the BVH refuses: that element is left out, the rest goes on
            if is_out_of_memory_error(exc):
                raise
            self.skipped.add(element, error_text(exc))
        else:
            yielded.add(element.id())

    def cache_stats(self) -> dict[str, int]:
        """What this job did with the geometry cache (lookups answered whole, tessellated, entries written)."""
        return self.cache.stats.as_result()
