"""ifcclash's Clasher, told how many geometry threads to use and what it could not put in its tree.

ifcclash's own ``add_collision_objects`` uses every core of the machine whatever else runs, asserts that
at least one element has geometry, and leaves the elements whose shape fails out of the clash test
without a word. This one does the same selection, uses the job's threads, and records each element
that produced no geometry (or one the tree refused) with its error, for the job's result.
"""

from __future__ import annotations

from typing import Any

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.util.selector
from ifcclash.ifcclash import Clasher, ClashSettings, ClashSource

from ifcservices.limits import is_out_of_memory_error
from ifcservices.skipped import Skipped, error_text
from ifcservices.tools import geometry_report


def _selected(ifc_file: ifcopenshell.file, source: ClashSource) -> set[Any]:
    """The elements of a clash source, as ifcclash selects them."""
    mode, selector = source.get("mode"), source.get("selector")
    elements = set(ifc_file.by_type("IfcElement")) - set(ifc_file.by_type("IfcFeatureElement"))
    if not mode or mode == "a" or not selector:
        return elements
    chosen = set(ifcopenshell.util.selector.filter_elements(ifc_file, selector))
    return elements - chosen if mode == "e" else chosen


class ReportingClasher(Clasher):  # type: ignore[misc]  # ifcclash has no type hints
    def __init__(self, settings: ClashSettings, threads: int) -> None:
        super().__init__(settings)
        self.threads = threads
        self.skipped = Skipped()
        # Elements with a representation that the sets asked for (once each, whichever side).
        self.attempted: set[tuple[str, int]] = set()

    def add_collision_objects(self, name: str, ifc_file: ifcopenshell.file, source: ClashSource) -> None:
        assert self.tree is not None  # process_clash_set makes it before adding objects
        elements = _selected(ifc_file, source)
        yielded: set[int] = set()
        empty: set[int] = set()
        if elements:
            iterator = ifcopenshell.geom.iterator(self.geom_settings, ifc_file, self.threads, include=list(elements))
            if iterator.initialize():  # False: no element has geometry (ifcclash asserts here)
                while True:
                    shape = iterator.get()  # type: ignore[no-untyped-call]
                    element = ifc_file.by_id(shape.id)
                    if geometry_report.is_empty(shape):
                        empty.add(shape.id)
                    else:
                        self._add(element, shape, yielded)
                    if not iterator.next():
                        break
        expected = sorted((e for e in elements if e.Representation is not None), key=lambda e: e.id())
        self.attempted.update((str(e.GlobalId), e.id()) for e in expected)
        geometry_report.without_geometry(self.geom_settings, expected, yielded, empty, into=self.skipped)
        self.groups[name]["elements"].update({e.GlobalId: e for e in elements if e.id() in yielded})

    def _add(self, element: Any, shape: Any, yielded: set[int]) -> None:
        try:
            self.tree.add_element(shape)
        except Exception as exc:  # a shape the BVH refuses: that element is left out, the rest goes on
            if is_out_of_memory_error(exc):
                raise
            self.skipped.add(element, error_text(exc))
        else:
            yielded.add(element.id())
