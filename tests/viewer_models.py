"""Models for the viewer's browser tests: glbs made with ifcopenshell as the ifcconvert tool makes them,
and a generated big model (about 25 MB of IFC, 1,500 elements on five storeys)."""

from __future__ import annotations

import math
import os
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
HOUSE = SAMPLES / "AC20-FZK-Haus.ifc"
SLAB = SAMPLES / "slab-standard-case.ifc"
CLASSES = ("IFCWALL", "IFCSLAB", "IFCCOLUMN", "IFCBEAM", "IFCMEMBER")
# Real models carry about a hundred properties per element (an ArchiCAD export's FZK-Haus has 80-120).
_PSETS = tuple(
    (f"Pset_Generated{i}", tuple(f"Property{i}_{j}" for j in range(15))) for i in range(9)
)
_GUID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$"


def to_glb(ifc: Path, glb: Path) -> int:
    """Convert like ``ifcservices.tools.convert`` with its defaults (spaces and openings left out);
    the number of elements written."""
    import ifcopenshell
    import ifcopenshell.geom

    from contracts.requests import IfcConvertRequest
    from ifcservices.tools.convert import DEFAULT_EXCLUDE, geometry_settings

    model = ifcopenshell.open(os.fspath(ifc))
    settings, _ = geometry_settings(IfcConvertRequest(input_filename="x.ifc", output_filename="x.glb"))
    glb.parent.mkdir(parents=True, exist_ok=True)
    serializer = ifcopenshell.geom.serializers.glb(os.fspath(glb), settings)
    serializer.setFile(model)
    serializer.writeHeader()
    iterator = ifcopenshell.geom.iterator(settings, model, 2, exclude=DEFAULT_EXCLUDE)
    count = 0
    if iterator.initialize():
        while True:
            serializer.write(iterator.get())
            count += 1
            if not iterator.next():
                break
    serializer.finalize()
    del serializer
    return count


def _guid(n: int, salt: int) -> str:
    value = (n * 2654435761 + salt * 40503) % (64**21)
    out = ""
    for _ in range(21):
        out = _GUID_CHARS[value % 64] + out
        value //= 64
    return "1" + out


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.next_id = 1

    def add(self, text: str) -> int:
        i = self.next_id
        self.next_id += 1
        self.lines.append(f"#{i}={text};")
        return i


def _profile_solid(w: _Writer, size: tuple[float, float, float], corners: int, seed: int) -> int:
    """An extruded solid whose profile is a rounded rectangle of ``corners`` points (slightly rippled,
    so no two elements share a shape): per element geometry, yet quick for the kernel to make."""
    sx, sy, sz = size
    points = []
    for i in range(corners):
        t = 2 * math.pi * i / corners
        c, s = math.cos(t), math.sin(t)
        # A superellipse: nearly rectangular, every point distinct.
        r = 1 + 0.01 * math.sin(7 * t + seed)
        x = sx / 2 * r * math.copysign(abs(c) ** 0.2, c) + sx / 2
        y = sy / 2 * r * math.copysign(abs(s) ** 0.2, s) + sy / 2
        points.append(w.add(f"IFCCARTESIANPOINT(({x:.5f},{y:.5f}))"))
    polyline = w.add(f"IFCPOLYLINE(({','.join(f'#{p}' for p in [*points, points[0]])}))")
    profile = w.add(f"IFCARBITRARYCLOSEDPROFILEDEF(.AREA.,$,#{polyline})")
    return w.add(f"IFCEXTRUDEDAREASOLID(#{profile},$,IFCDIRECTION((0.,0.,1.)),{sz:.3f})")


def big_model(path: Path, elements: int = 1500, storeys: int = 5, k: int = 32) -> None:
    """An IFC4 model of ``elements`` elements (walls, slabs, columns, beams, members) in a grid on
    ``storeys`` storeys, each an extrusion of a ``k``-point profile with 135 properties, about 16 KB of
    IFC per element (extrusions: ifcopenshell converts them quickly, where breps and meshes of the
    same size take many minutes)."""
    w = _Writer()
    origin = w.add("IFCCARTESIANPOINT((0.,0.,0.))")
    axis = w.add(f"IFCAXIS2PLACEMENT3D(#{origin},$,$)")
    context = w.add(f"IFCGEOMETRICREPRESENTATIONCONTEXT($,'Model',3,1.E-05,#{axis},$)")
    body = w.add(f"IFCGEOMETRICREPRESENTATIONSUBCONTEXT('Body','Model',*,*,*,*,#{context},$,.MODEL_VIEW.,$)")
    metre = w.add("IFCSIUNIT(*,.LENGTHUNIT.,$,.METRE.)")
    units = w.add(f"IFCUNITASSIGNMENT((#{metre}))")
    project = w.add(f"IFCPROJECT('{_guid(1, 1)}',$,'Big model',$,$,$,$,(#{context}),#{units})")
    site_place = w.add(f"IFCLOCALPLACEMENT($,#{axis})")
    site = w.add(f"IFCSITE('{_guid(2, 1)}',$,'Site',$,$,#{site_place},$,$,.ELEMENT.,$,$,$,$,$)")
    building = w.add(f"IFCBUILDING('{_guid(3, 1)}',$,'Building',$,$,#{site_place},$,$,.ELEMENT.,$,$,$)")
    w.add(f"IFCRELAGGREGATES('{_guid(4, 1)}',$,$,$,#{project},(#{site}))")
    w.add(f"IFCRELAGGREGATES('{_guid(5, 1)}',$,$,$,#{site},(#{building}))")
    height = 3.5
    storey_ids: list[int] = []
    storey_places: list[int] = []
    for s in range(storeys):
        point = w.add(f"IFCCARTESIANPOINT((0.,0.,{s * height:.1f}))")
        place = w.add(f"IFCLOCALPLACEMENT(#{site_place},IFCAXIS2PLACEMENT3D(#{point},$,$))")
        storey_places.append(place)
        storey_ids.append(w.add(
            f"IFCBUILDINGSTOREY('{_guid(10 + s, 2)}',$,'Level {s}',$,$,#{place},$,$,.ELEMENT.,{s * height:.1f})"))
    w.add(f"IFCRELAGGREGATES('{_guid(6, 1)}',$,$,$,#{building},({','.join(f'#{i}' for i in storey_ids)}))")
    per_storey = math.ceil(elements / storeys)
    side = math.ceil(math.sqrt(per_storey))
    contained: list[list[int]] = [[] for _ in range(storeys)]
    for n in range(elements):
        s, slot = divmod(n, per_storey)
        kind = CLASSES[n % len(CLASSES)]
        x, y = (slot % side) * 2.0, (slot // side) * 2.0
        size = {"IFCSLAB": (1.8, 1.8, 0.25), "IFCCOLUMN": (0.4, 0.4, 3.0), "IFCBEAM": (1.8, 0.3, 0.4)}.get(
            kind, (1.8, 0.25, 2.8))
        solid = _profile_solid(w, size, k, n)
        rep = w.add(f"IFCSHAPEREPRESENTATION(#{body},'Body','SweptSolid',(#{solid}))")
        shape = w.add(f"IFCPRODUCTDEFINITIONSHAPE($,$,(#{rep}))")
        point = w.add(f"IFCCARTESIANPOINT(({x:.1f},{y:.1f},0.))")
        place = w.add(f"IFCLOCALPLACEMENT(#{storey_places[s]},IFCAXIS2PLACEMENT3D(#{point},$,$))")
        name = f"{kind.title()[3:]} {n}"
        element = w.add(f"{kind}('{_guid(1000 + n, 3)}',$,'{name}',$,$,#{place},#{shape},$,$)")
        contained[s].append(element)
        for m, (set_name, names) in enumerate(_PSETS):
            props = [w.add(f"IFCPROPERTYSINGLEVALUE('{p}',$,IFCLABEL('{p} of element {n}, revision A'),$)")
                     for p in names]
            pset = w.add(f"IFCPROPERTYSET('{_guid(100000 + n * 16 + m, 4)}',$,'{set_name}',$,"
                         f"({','.join(f'#{p}' for p in props)}))")
            w.add(f"IFCRELDEFINESBYPROPERTIES('{_guid(200000 + n * 16 + m, 5)}',$,$,$,(#{element}),#{pset})")
    for s, ids in enumerate(contained):
        refs = ",".join(f"#{i}" for i in ids)
        w.add(f"IFCRELCONTAINEDINSPATIALSTRUCTURE('{_guid(300000 + s, 6)}',$,$,$,({refs}),#{storey_ids[s]})")
    header = ("ISO-10303-21;\nHEADER;\nFILE_DESCRIPTION(('ViewDefinition [DesignTransferView]'),'2;1');\n"
              "FILE_NAME('big.ifc','2026-01-01T00:00:00',(''),(''),'ifcflow tests','ifcflow','');\n"
              "FILE_SCHEMA(('IFC4'));\nENDSEC;\nDATA;\n")
    path.write_text(header + "\n".join(w.lines) + "\nENDSEC;\nEND-ISO-10303-21;\n", encoding="ascii")
