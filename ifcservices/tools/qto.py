"""Quantity take-off with ifc5d: base quantities computed from geometry, written into a new IFC."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import ifcopenshell
from ifc5d import qto

from contracts.requests import IfcQtoRequest
from ifcservices.context import TaskContext
from ifcservices.ifcfiles import open_ifc
from ifcservices.skipped import Skipped, error_text, fail_if_nothing_done, isolate


def rule_set(model: ifcopenshell.file) -> str:
    """ifc5d's rules for the model's schema (IFC2X3 shares the IFC4 quantity set names)."""
    return "IFC4X3QtoBaseQuantities" if model.schema_identifier.startswith("IFC4X3") else "IFC4QtoBaseQuantities"


def _summary(results: dict[Any, dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    totals: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: defaultdict[str, int] = defaultdict(int)
    for quantity_sets in results.values():
        for name, quantities in quantity_sets.items():
            if not quantities:
                continue
            counts[name] += 1
            for quantity, value in quantities.items():
                totals[name][quantity] += float(value)
    for name in sorted(counts):
        summary[name] = {"elements": counts[name], "totals": {q: round(v, 6) for q, v in sorted(totals[name].items())}}
    return summary


def _quantify(model: ifcopenshell.file, elements: list[Any], rules: str, skipped: Skipped) -> dict[Any, Any]:
    """ifc5d's quantities of ``elements``; an element that makes ifc5d raise (e.g. "zero-size array to
    reduction operation maximum" for a wall its openings cut away) is skipped, the others are kept."""
    results: dict[Any, Any] = {}
    for part in isolate(elements, lambda batch: qto.quantify(model, set(batch), qto.rules[rules]), skipped):
        results.update(part)
    return results


def _write_qtos(model: ifcopenshell.file, results: dict[Any, Any], skipped: Skipped) -> dict[Any, Any]:
    written: dict[Any, Any] = {}
    for element, sets in results.items():
        try:
            qto.edit_qtos(model, {element: sets})
        except Exception as exc:  # a value ifcopenshell.api refuses (NaN, wrong type): that element only
            skipped.add(element, error_text(exc))
        else:
            written[element] = sets
    return written


def run(request: IfcQtoRequest, ctx: TaskContext) -> dict[str, Any]:
    """Quantify every element (and space) the rules cover and save the model with its quantity sets."""
    assert request.output_file is not None  # the model fills in its default
    ctx.progress(1, "opening model")
    model = open_ifc(ctx.input(request.input_file), request.input_file)
    rules = rule_set(model)
    elements = sorted(set(model.by_type("IfcElement")) | set(model.by_type("IfcSpace")), key=lambda e: e.id())
    ctx.progress(10, f"calculating quantities of {len(elements)} elements")
    skipped = Skipped()
    results = _quantify(model, elements, rules, skipped)
    fail_if_nothing_done(f"calculate-qtos of {request.input_file}", len(elements), skipped)
    ctx.progress(80, "writing quantity sets")
    results = _write_qtos(model, results, skipped)
    fail_if_nothing_done(f"calculate-qtos of {request.input_file}", len(elements), skipped)
    with ctx.output(request.output_file) as output:
        model.write(os.fspath(output))
    summary = _summary(results)
    return {
        "output_files": ctx.output_files,
        "rule_set": rules,
        "elements_quantified": sum(1 for sets in results.values() if any(sets.values())),
        "quantity_sets": summary,
        "skipped_elements": skipped.as_result(),
    }
