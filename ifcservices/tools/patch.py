"""``POST /patch/execute``: one ifcpatch recipe (built-in, or custom from ``IFCFLOW_IFCPATCH_RECIPE_DIR``)
on one model, its output written to ``output/ifcpatch/``.

The recipe's arguments are checked and typed against the recipe's own signature and docs
(``contracts.patch_args``), and the ones that name files are confined to the data directory, so a
request cannot make a recipe read or write anywhere else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ifcpatch

from access.scope import prefix_of, project_of_key
from contracts.compat_requests import IfcPatchRequest
from contracts.files import output_path, resolve_input
from contracts.patch_args import ArgumentRefused, coerce
from contracts.paths import check_relative_path
from ifcservices.confine import resolve, resolve_output
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import open_ifc
from ifcservices.tools.recipe_docs import builtin_names, describe, load_custom
from settings import get_settings

SERVICE = "ifcpatch"
log = logging.getLogger("IFCPatch")


def _path_resolver(ctx: TaskContext, output_file: str) -> Any:
    def resolve_path(role: str, value: str) -> str:
        relative = check_relative_path(value)  # "/uploads/a.ifc" and friends map as for any path field
        if role == "output_dir":
            # A folder the recipe writes into: beside the output file, under its project's output/ifcpatch/
            # (the gateway sends full store keys: projects/<p>/... for a project other than default).
            prefix = prefix_of(project_of_key(relative))
            folder = resolve_output(ctx.data_dir, prefix + output_path(SERVICE, relative[len(prefix):]))
            folder.mkdir(parents=True, exist_ok=True)
            return os.fspath(folder)
        found = resolve_input(ctx.data_dir, relative)
        if found is None:
            raise ValueError(f"file {value!r} not found in the data directory")
        return os.fspath(ctx.input(found))

    return resolve_path


def _recipe(request: IfcPatchRequest) -> tuple[dict[str, Any], Path | None]:
    custom_dir = get_settings().ifcpatch_recipe_dir if request.use_custom else None
    if request.use_custom and (custom_dir is None or not (custom_dir / f"{request.recipe}.py").is_file()):
        raise BadInput(f"recipe: no custom recipe {request.recipe!r} on this server (IFCFLOW_IFCPATCH_RECIPE_DIR)")
    doc = describe(request.recipe, custom_dir=custom_dir)
    if doc is None or (not request.use_custom and request.recipe not in builtin_names()):
        raise BadInput(f"recipe: {request.recipe!r} is not an ifcpatch recipe (see POST /patch/recipes/list)")
    if not doc["loadable"]:
        raise BadInput(f"recipe: {request.recipe!r} cannot be loaded on this server")
    return doc, custom_dir


def _execute(request: IfcPatchRequest, model: Any, input_path: Path, arguments: list[Any],
             custom_dir: Path | None) -> Any:
    if custom_dir is None:
        os.environ.pop("IFCPATCH_RECIPE_DIR", None)  # execute() would load recipes from there instead
        return ifcpatch.execute({"input": os.fspath(input_path), "file": model, "recipe": request.recipe,
                                 "arguments": arguments})
    patcher = load_custom(custom_dir, request.recipe).Patcher(model, log, *arguments)
    patcher.patch()
    return patcher.get_output() if hasattr(patcher, "get_output") else ifcpatch.BasePatcher.get_output(patcher)


def run(request: IfcPatchRequest, ctx: TaskContext) -> dict[str, Any]:
    """Apply the recipe and write what it gives (a model, or text) to ``output_file``."""
    doc, custom_dir = _recipe(request)
    try:
        arguments = coerce(request.recipe, doc["parameters"], request.arguments,
                           _path_resolver(ctx, request.output_file))
    except ArgumentRefused as exc:
        where = f"arguments.{exc.index}" if exc.index is not None else "arguments"
        raise BadInput(f"{where}: {exc.message}") from None
    ctx.progress(2, "opening model")
    input_path = ctx.input(request.input_file)
    model = open_ifc(input_path, request.input_file)
    ctx.progress(20, f"running {request.recipe}")
    output = _execute(request, model, input_path, arguments, custom_dir)
    ctx.progress(85, "writing output")
    size = None
    if output is not None:
        with ctx.output(request.output_file) as staged:
            ifcpatch.write(output, staged)
        size = resolve(ctx.data_dir, request.output_file).stat().st_size
    return {
        "success": True,
        "message": f"Successfully applied recipe '{request.recipe}'",
        "output_path": f"/{request.output_file}" if output is not None else None,
        "recipe": request.recipe,
        "is_custom": request.use_custom,
        "output_size_bytes": size,
        "arguments_used": request.arguments,
        "original_filename": Path(request.input_file).name,
        "output_filename": Path(request.output_file).name,
        "output_files": ctx.output_files,
    }
