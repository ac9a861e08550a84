"""ifcopenshell's shapes to and from the geometry cache's records (``ifcservices.geometry_cache``).

A cached shape is rebuilt with ifcopenshell 0.9's public constructors: a ``triangulation`` from the
stored arrays, an ``element`` with the product of the model now open and its placement, and the
``triangulation_element`` of the two, which is what the iterator yields and what the clash tree takes.
SWIG offers no way to make a placement matrix from numbers, so the placement is the one
``ifcopenshell.geom.map_shape`` makes of the product's ``ObjectPlacement``, checked to equal the stored
one number for number; where it does not (settings that move elements, a product without placement)
the element is tessellated again. Styles are kept by their name, colours and factors, and rebuilt for a
convert's serializer (the clash tree does not read them: its shapes are rebuilt without).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.ifcopenshell_wrapper
import numpy as np

from ifcservices.geometry_cache import ARRAYS, ElementShape, Geometry, ShapeSet

# SWIG's classes have no type hints: used as Any rather than ignored line by line.
wrapper: Any = ifcopenshell.ifcopenshell_wrapper
IDENTITY = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
_BUFFERS = {
    "verts": "verts_buffer",
    "faces": "faces_buffer",
    "edges": "edges_buffer",
    "normals": "normals_buffer",
    "item_ids": "item_ids_buffer",
    "edges_item_ids": "edges_item_ids_buffer",
    "material_ids": "material_ids_buffer",
}
_COLOURS = ("diffuse", "surface", "specular")


def _rgb(colour: Any) -> list[float] | None:
    try:
        return [float(colour.r()), float(colour.g()), float(colour.b())]
    except (AttributeError, RuntimeError, TypeError):  # a colour the style does not set
        return None


def _style_record(style: Any) -> list[Any]:
    """A style as numbers: name, the three colours (or None), specularity, transparency, surface flag."""
    colours = [_rgb(getattr(style, name, None)) for name in _COLOURS]
    return [str(style.name), *colours, float(style.specularity), float(style.transparency),
            bool(style.use_surface_color)]


def _style(record: list[Any]) -> Any:
    name, *colours, specularity, transparency, use_surface_color = record
    style = wrapper.style(name)
    for attribute, rgb in zip(_COLOURS, colours, strict=True):
        if rgb is not None:
            setattr(style, attribute, wrapper.colour(*rgb))
    style.specularity, style.transparency = specularity, transparency
    style.use_surface_color = use_surface_color
    return style


def _arrays(geometry: Any) -> dict[str, Any]:
    arrays = {}
    for name, dtype in ARRAYS:
        if name in _BUFFERS:
            arrays[name] = np.frombuffer(getattr(geometry, _BUFFERS[name]), dtype=dtype)
        else:  # no buffer accessor for these
            arrays[name] = np.asarray(getattr(geometry, name), dtype=dtype)
    return arrays


class Recorder:
    """Collects the triangulated shapes an iterator yields into a ``ShapeSet``, up to ``budget`` bytes
    of arrays (past it, nothing is kept: an entry is whole or not written)."""

    def __init__(self, covered: set[int], budget: int) -> None:
        self.shapes = ShapeSet(covered=set(covered))
        self.budget = budget
        self._bytes = 0
        self._by_geometry_id: dict[str, list[int]] = {}

    @property
    def full(self) -> bool:
        return self._bytes > self.budget

    def add(self, shape: Any) -> None:
        """Record a shape the iterator yielded (natively shaped ones, for STEP and IGES, are not kept)."""
        if not isinstance(shape, wrapper.triangulation_element):
            self._bytes = self.budget + 1  # a set with a shape missing would claim the shape has none
        if self.full:
            return
        geometry = shape.geometry
        arrays = _arrays(geometry)
        styles = [_style_record(m) for m in geometry.materials]
        index = self._same_geometry(str(geometry.id), arrays, styles)
        if index is None:
            index = len(self.shapes.geometries)
            # Copies: the buffers belong to the shape, which the iterator frees.
            self.shapes.geometries.append(Geometry(str(geometry.entity()), str(geometry.id),
                                                   {k: a.copy() for k, a in arrays.items()}, styles))
            self._by_geometry_id.setdefault(str(geometry.id), []).append(index)
            self._bytes += sum(a.nbytes for a in arrays.values())
        self.shapes.elements[shape.id] = ElementShape(
            id=shape.id, parent_id=shape.parent_id, name=shape.name, type=shape.type, guid=shape.guid,
            context=shape.context, geometry=index, matrix=[float(x) for x in shape.transformation.matrix],
        )

    def _same_geometry(self, geometry_id: str, arrays: dict[str, Any], styles: list[list[Any]]) -> int | None:
        # Instances of one type share a representation: stored once. The id alone is not trusted.
        for index in self._by_geometry_id.get(geometry_id, []):
            kept = self.shapes.geometries[index]
            # repr: NaN factors (a style that sets none) compare equal to themselves that way.
            if repr(kept.styles) == repr(styles) and all(np.array_equal(kept.arrays[n], arrays[n]) for n in arrays):
                return index
        return None

    def add_empty(self, shape: Any) -> None:
        """Record a shape the iterator yielded without vertices (a serializer still gets it)."""
        self.add(shape)
        self.shapes.empty.add(shape.id)

    def result(self) -> ShapeSet | None:
        return None if self.full else self.shapes


def _placement(settings: ifcopenshell.geom.settings, product: Any, stored: list[float]) -> Any | None:
    if tuple(stored) == IDENTITY:
        return wrapper.matrix4()
    placement = getattr(product, "ObjectPlacement", None)
    if placement is None:
        return None
    matrix: Any = ifcopenshell.geom.map_shape(settings, placement)
    rows = matrix.components
    if tuple(rows[r][c] for c in range(4) for r in range(4)) != tuple(stored):
        return None
    return matrix


def rebuild(
    settings: ifcopenshell.geom.settings, ifc_file: ifcopenshell.file, shapes: ShapeSet, ids: Iterable[int],
    styled: bool = False,
) -> tuple[list[Any], set[int]]:
    """The shapes of the products ``ids`` (all in ``shapes.elements``) as the iterator would yield
    them from ``ifc_file`` (``styled``: with their styles, as a serializer needs them), and the ids that
    cannot be rebuilt exactly (to tessellate again)."""
    rebuilt: list[Any] = []
    failed: set[int] = set()
    triangulations: dict[int, Any] = {}
    for product_id in ids:
        record = shapes.elements[product_id]
        try:
            product: Any = ifc_file.by_id(product_id)
        except RuntimeError:
            failed.add(product_id)
            continue
        matrix = _placement(settings, product, record.matrix) if product.is_a() == record.type else None
        if matrix is None:
            failed.add(product_id)
            continue
        if record.geometry not in triangulations:
            geometry = shapes.geometries[record.geometry]
            a = {name: geometry.arrays[name].tolist() for name, _ in ARRAYS}
            styles = [_style(r) for r in geometry.styles] if styled else []
            triangulations[record.geometry] = wrapper.triangulation(
                settings, geometry.entity, geometry.id, a["verts"], a["faces"], a["edges"], a["normals"], a["uvs"],
                a["material_ids"] if styled else [], styles, a["item_ids"], a["edges_item_ids"],
            )
        element = wrapper.element(settings, record.id, record.parent_id, record.name, record.type, record.guid,
                                  record.context, matrix, product)
        rebuilt.append(wrapper.triangulation_element(element, triangulations[record.geometry]))
    return rebuilt, failed
