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


def run(request: IfcQtoRequest, ctx: TaskContext) -> dict[str, Any]:
    """Quantify every element (and space) the rules cover and save the model with its quantity sets."""
    assert request.output_file is not None  # the model fills in its default
    ctx.progress(1, "opening model")
    model = open_ifc(ctx.input(request.input_file), request.input_file)
    rules = rule_set(model)
    elements = set(model.by_type("IfcElement")) | set(model.by_type("IfcSpace"))
    ctx.progress(10, f"calculating quantities of {len(elements)} elements")
    results = qto.quantify(model, elements, qto.rules[rules])
    ctx.progress(80, "writing quantity sets")
    qto.edit_qtos(model, results)
    with ctx.output(request.output_file) as output:
        model.write(os.fspath(output))
    summary = _summary(results)
    return {
        "output_files": ctx.output_files,
        "rule_set": rules,
        "elements_quantified": sum(1 for sets in results.values() if any(sets.values())),
        "quantity_sets": summary,
    }
