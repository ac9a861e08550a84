"""``python -m bench.direct_convert <in.ifc> <out.glb> <threads>``: the work of an ``ifcconvert`` job done
directly with ifcopenshell in this one process (the ``ifc_overhead`` scenario's baseline).

The same geometry settings as the service's convert of a request with its defaults, the same default
exclusions, the same glb serializer; timed from opening the model to the finished file, after the imports
(the service's children fork from a process that has them loaded). Prints ``{"seconds": ...}``.
"""

from __future__ import annotations

import json
import sys
import time

import ifcopenshell
import ifcopenshell.geom

from contracts.requests import IfcConvertRequest
from ifcservices.tools.convert import DEFAULT_EXCLUDE, geometry_settings


def convert(source: str, output: str, threads: int) -> float:
    """Convert ``source`` to ``output`` (glb); the seconds it took."""
    started = time.perf_counter()
    model = ifcopenshell.open(source)
    settings, _ = geometry_settings(IfcConvertRequest(input_filename="model.ifc", output_filename="model.glb"))
    serializer = ifcopenshell.geom.serializers.glb(output, settings)
    serializer.setFile(model)
    serializer.writeHeader()  # type: ignore[no-untyped-call]
    iterator = ifcopenshell.geom.iterator(settings, model, threads, exclude=DEFAULT_EXCLUDE)
    if iterator.initialize():
        while True:
            serializer.write(iterator.get())  # type: ignore[no-untyped-call]
            if not iterator.next():
                break
    serializer.finalize()  # type: ignore[no-untyped-call]
    del serializer
    return time.perf_counter() - started


if __name__ == "__main__":
    print(json.dumps({"seconds": convert(sys.argv[1], sys.argv[2], int(sys.argv[3]))}))
