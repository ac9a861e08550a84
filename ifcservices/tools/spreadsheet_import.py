"""Edits made in a CSV, XLSX or ODS table exported by ifccsv, written back into a new IFC file."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import ifccsv
import ifcopenshell

from contracts.requests import IfcCsvImportRequest
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import open_ifc

FORMATS = ("csv", "xlsx", "ods")


def _global_ids(table: Path, fmt: str) -> list[str]:
    """The first column of every data row: the GlobalIds ifccsv will look up."""
    if fmt == "csv":
        with table.open(newline="", encoding="utf-8") as handle:
            return [row[0] for row in list(csv.reader(handle))[1:] if row]
    import pandas as pd

    frame = pd.read_excel(table, engine="odf" if fmt == "ods" else "openpyxl")
    return [str(value) for value in frame.iloc[:, 0].tolist()] if len(frame.columns) else []


def run(request: IfcCsvImportRequest, ctx: TaskContext) -> dict[str, Any]:
    """Apply each row of the table to the element with its GlobalId; save the result as a new IFC."""
    fmt = Path(request.csv_filename).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise BadInput(f"csv_filename: cannot import .{fmt} tables; use one of {', '.join(FORMATS)}")
    assert request.output_filename is not None  # the model fills in its default
    ctx.progress(1, "opening model")
    model = open_ifc(ctx.input(request.ifc_filename), request.ifc_filename)
    table = ctx.input(request.csv_filename)
    ctx.progress(30, "reading table")
    try:
        global_ids = _global_ids(table, fmt)
    except (ValueError, OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"{request.csv_filename} is not a readable {fmt} table: {exc}") from None
    known = sum(1 for gid in global_ids if _exists(model, gid))
    ctx.progress(50, f"applying {len(global_ids)} rows")
    ifccsv.IfcCsv().Import(model, os.fspath(table))
    ctx.progress(80, "writing model")
    with ctx.output(request.output_filename) as output:
        model.write(os.fspath(output))
    return {
        "output_files": ctx.output_files,
        "rows": len(global_ids),
        "rows_matched": known,
        "unknown_global_ids": [gid for gid in global_ids if not _exists(model, gid)],
    }


def _exists(model: ifcopenshell.file, global_id: str) -> bool:
    try:
        model.by_guid(global_id)
    except RuntimeError:
        return False
    return True
