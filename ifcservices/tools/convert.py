"""IFC to glTF binary, OBJ, COLLADA, STEP, IGES, SVG or Turtle with the ifcopenshell.geom serializers,
as IfcConvert does: one geometry iterator feeding one serializer chosen by the output's extension.

The triangulations it makes are kept in the geometry cache (``ifcservices.geometry_cache``): a later
convert or clash of the same bytes under the same geometry settings rebuilds them from there instead of
tessellating the model again."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.ifcopenshell_wrapper as wrapper

from contracts.requests import IfcConvertRequest
from ifcservices.cached_shapes import Recorder, rebuild
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.geometry_cache import GeometryCache, content_digest, entry_key
from ifcservices.ifcfiles import open_ifc, parser_log
from ifcservices.skipped import fail_if_nothing_done
from ifcservices.tools import convert_options, geometry_report

# Output extension -> serializer name in ifcopenshell.geom.serializers (0.9 ships these plug-ins).
SERIALIZERS = {
    "glb": "glb",
    "obj": "obj",
    "dae": "dae",
    "stp": "stp",
    "step": "stp",
    "igs": "igs",
    "iges": "igs",
    "svg": "svg",
    "ttl": "ttl",
}
DEFAULT_EXCLUDE = convert_options.DEFAULT_EXCLUDE
# Serializers that write the same bytes from shapes rebuilt out of the geometry cache as from the
# iterator's (tested); COLLADA orders and shares materials by the styles' IFC instances, which rebuilt
# styles do not have, so it (and the rest) always tessellates, while still filling the cache.
CACHE_READERS = {"glb", "obj"}


def geometry_settings(request: IfcConvertRequest) -> tuple[ifcopenshell.geom.settings, list[str]]:
    """The iterator settings for the request's options, and the options 0.9 no longer has."""
    if not request.plan and not request.model:
        raise BadInput("nothing to convert: 'plan' (curves) and 'model' (surfaces and solids) are both false")
    settings = ifcopenshell.geom.settings()  # type: ignore[no-untyped-call]
    if request.plan and request.model:
        settings.set("dimensionality", wrapper.CURVES_SURFACES_AND_SOLIDS)
    elif request.plan:
        settings.set("dimensionality", wrapper.CURVES)
    settings.set("weld-vertices", request.weld_vertices)
    settings.set("use-world-coords", request.use_world_coords)
    settings.set("convert-back-units", request.convert_back_units)
    settings.set("disable-opening-subtractions", request.disable_opening_subtractions)
    # 0.8 replaced sewing shells by reorienting them, which is what sewing was wanted for.
    settings.set("reorient-shells", request.sew_shells)
    if request.bounds:
        settings.set("bounds", request.bounds)
    convert_options.apply_flags(request, settings)  # IfcConvert's other flags, those given
    return settings, convert_options.ignored(request)


def _serializer(output: Path, settings: ifcopenshell.geom.settings) -> Any:
    name = SERIALIZERS[output.suffix.lower().lstrip(".")]
    factory = getattr(ifcopenshell.geom.serializers, name)
    if name == "obj":
        return factory(os.fspath(output), os.fspath(output.with_suffix(".mtl")), settings)
    return factory(os.fspath(output), settings)


def _write_log(ctx: TaskContext, relative: str, lines: list[str], fmt: str | None) -> None:
    with ctx.output(relative) as path:
        if fmt == "json":  # IfcConvert's --log-format json: one JSON object per line
            text = "".join(json.dumps({"message": line}) + "\n" for line in lines)
        else:
            text = "\n".join(lines) + "\n"
        path.write_text(text, encoding="utf-8")


def _recorder(
    cache: GeometryCache, source: Path, model: ifcopenshell.file, filters: dict[str, list[Any]],
    settings: ifcopenshell.geom.settings, library: str,
) -> tuple[str, Recorder] | None:
    """The cache entry's key and what records into it, or None when nothing will be kept."""
    if not cache.enabled or settings.get("iterator-output") == wrapper.NATIVE:
        return None
    covered = convert_options.iterated_products(model, filters)
    return entry_key(content_digest(source), settings, library), Recorder(covered, cache.max_bytes)


def _from_cache(
    cache: GeometryCache, recording: tuple[str, Recorder], model: ifcopenshell.file,
    settings: ifcopenshell.geom.settings,
) -> list[Any] | None:
    """Every shape the iterator would yield, rebuilt with its styles from an entry that has them all
    (in the order it yielded them), or None."""
    key, recorder = recording
    covered = recorder.shapes.covered
    entry = cache.load(key)
    if entry is None or not covered <= entry.covered or not (entry.empty & covered) <= entry.elements.keys():
        return None
    shapes, failed = rebuild(settings, model, entry, [i for i in entry.elements if i in covered], styled=True)
    return None if failed else shapes


def _iterated(
    iterator: ifcopenshell.geom.iterator, recorder: Recorder | None
) -> Iterator[tuple[Any, float]]:
    """Each shape the iterator yields (recorded for the cache) and the percentage done."""
    if not iterator.initialize():
        return
    while True:
        shape = iterator.get()  # type: ignore[no-untyped-call]
        if recorder is not None:
            (recorder.add_empty if geometry_report.is_empty(shape) else recorder.add)(shape)
        yield shape, iterator.progress()
        if not iterator.next():
            break


def _cached(shapes: list[Any]) -> Iterator[tuple[Any, float]]:
    for n, shape in enumerate(shapes, start=1):
        yield shape, 100 * n / len(shapes)


def _keep(cache: GeometryCache, recording: tuple[str, Recorder] | None) -> None:
    if recording is None or (shapes := recording[1].result()) is None:
        return
    key = recording[0]
    known = cache.load(key)  # a clash's entry of other elements of the model: kept beside ours
    cache.store(key, known.merge(shapes) if known is not None else shapes)


def run(request: IfcConvertRequest, ctx: TaskContext) -> dict[str, Any]:
    """Convert ``request.input_filename``; the format is the output file's extension."""
    suffix = PurePosixPath(request.output_filename).suffix.lower().lstrip(".")
    if suffix not in SERIALIZERS:
        raise BadInput(f"output_filename: ifcopenshell 0.9 has no serializer for .{suffix}")
    ctx.progress(1, "opening model")
    source = ctx.input(request.input_filename)
    model = open_ifc(source, request.input_filename)
    settings, ignored = geometry_settings(request)
    filters = convert_options.filters(model, request)
    library = convert_options.geometry_library(request)
    parser_log()  # start the conversion log afresh

    count = 0
    yielded: set[int] = set()
    empty: set[int] = set()
    with ctx.output(request.output_filename) as output:
        serializer = _serializer(output, settings)
        if not serializer.isTesselated():
            # STEP and IGES take the kernel's exact shapes, not triangles (IfcConvert does the same).
            settings.set("iterator-output", wrapper.NATIVE)
        serializer.setFile(model)
        serializer.writeHeader()
        ctx.progress(5, "creating geometry")
        threads = convert_options.threads(request, ctx.threads)
        cache = ctx.geometry_cache()
        recording = _recorder(cache, source, model, filters, settings, library)
        readable = recording is not None and SERIALIZERS[suffix] in CACHE_READERS
        cached = _from_cache(cache, recording, model, settings) if readable and recording is not None else None
        if cached is not None:
            cache.stats.hits += 1
            shapes = _cached(cached)
        else:
            cache.stats.misses += recording is not None
            iterator = ifcopenshell.geom.iterator(
                settings, model, threads, geometry_library=library, **filters,  # type: ignore[arg-type]
            )
            shapes = _iterated(iterator, recording[1] if recording is not None else None)
        for shape, done in shapes:
            serializer.write(shape)
            yielded.add(shape.id)
            if geometry_report.is_empty(shape):
                empty.add(shape.id)
            count += 1
            ctx.progress(5 + 0.9 * done, "creating geometry")
        ctx.progress(96, "writing output")
        serializer.finalize()
        del serializer  # closes the file before it is renamed into place
        size = output.stat().st_size
    if cached is None:
        _keep(cache, recording)
    expected = geometry_report.expected_elements(model, filters)
    missing = geometry_report.without_geometry(settings, expected, yielded, empty)
    if request.model:  # a plan of curves may rightly find none in a model of solids
        fail_if_nothing_done(f"ifcconvert of {request.input_filename}", len(expected), missing)

    if request.log_file:
        lines = [] if request.quiet else [
            f"converted {count} elements of {request.input_filename} to {request.output_filename}"
        ]
        lines += [f"ignored {name}: {convert_options.WHY_IGNORED[name]}" for name in ignored]
        log_text = parser_log().strip()
        lines.extend(log_text.splitlines() if request.verbose and not request.quiet else [])
        _write_log(ctx, request.log_file, lines, request.log_format)

    return {
        "output_files": ctx.output_files,
        "format": suffix,
        "size_bytes": size,
        "input_size_bytes": source.stat().st_size,
        "element_count": count - len(empty),
        "elements_without_geometry": missing.as_result(),
        "ignored_options": ignored,
        "threads": threads,  # geometry threads: the service's free cores when the job started
        "geometry_cache": cache.stats.as_result(),
    }
