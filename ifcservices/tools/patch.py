"""``POST /patch/execute``: one ifcpatch recipe (built-in, or custom from ``IFCFLOW_IFCPATCH_RECIPE_DIR``)
on one model, its output written to ``output/ifcpatch/``.

The recipe's arguments are checked and typed against the recipe's own signature and docs
(``contracts.patch_args``), and the ones that name files are confined to the data directory (a
project's job: to its project's folder), so a request cannot make a recipe read or write anywhere else.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
from pathlib import Path
from typing import Any

import ifcpatch

from access.scope import prefix_of, project_of_key
from contracts.compat_requests import IfcPatchRequest
from contracts.files import output_dir_path, resolve_input
from contracts.patch_args import ArgumentRefused, PathResolver, coerce
from contracts.paths import check_relative_path
from ifcservices.confine import relative_to_root, resolve, resolve_output_dir
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import open_ifc
from ifcservices.tools.recipe_docs import builtin_names, describe, load_custom
from settings import get_settings

SERVICE = "ifcpatch"
log = logging.getLogger("IFCPatch")


def _path_resolver(ctx: TaskContext, output_file: str, folders: list[Path]) -> PathResolver:
    prefix = prefix_of(project_of_key(output_file))

    def resolve_path(role: str, value: str) -> str:
        relative = check_relative_path(value)  # "/uploads/a.ifc" and friends map as for any path field
        if role == "output_dir":
            folder = _output_dir(ctx, output_file, relative)
            folders.append(folder)
            return os.fspath(folder)
        found = _input_file(ctx.data_dir, prefix, relative)
        if found is None:
            raise ValueError(f"file {value!r} not found in the data directory")
        return os.fspath(ctx.input(found))

    return resolve_path


def _input_file(data_dir: Path, prefix: str, key: str) -> str | None:
    """The data-dir-relative file a recipe's file argument names. A project's job (its output file is
    the project's) finds only files inside the project's folder, links there followed no further out: the
    gateway checked them and sends them as full store keys, and one that is not (a job recorded some
    other way) must still never open another project's file, nor default's."""
    if not prefix:
        return resolve_input(data_dir, key)
    found = resolve_input(data_dir / prefix.rstrip("/"), key[len(prefix):] if key.startswith(prefix) else key)
    return None if found is None else prefix + found


def _output_dir(ctx: TaskContext, output_file: str, key: str) -> Path:
    """The folder a recipe writes into (made when missing): under output/ifcpatch/ of the output file's
    project. The output file is a checked store key (``projects/<p>/...`` for a project other than
    default), the folder taken relative to that project, its prefix dropped when it has it (the gateway
    sends full store keys): however the job was made, its folder is never another project's."""
    prefix = prefix_of(project_of_key(output_file))
    relative = key[len(prefix):] if prefix and key.startswith(prefix) else key
    return resolve_output_dir(ctx.data_dir, prefix + output_dir_path(SERVICE, relative))


def _with_folders(parameters: list[dict[str, Any]], arguments: list[Any], output_file: str,
                  resolve_path: PathResolver) -> list[Any]:
    """``arguments`` with every folder parameter given a folder. One left out, null or empty would have
    the recipe write where the service runs (SplitByBuildingStorey writes into ``Path()``), outside the
    data directory: it gets ``<output file without its extension>_files/`` beside the output file, a
    folder of its own (no other job's outputs in it)."""
    filled = list(arguments)
    for i, parameter in enumerate(parameters):
        if parameter.get("path_role") != "output_dir" or (i < len(filled) and filled[i] not in (None, "")):
            continue
        if i > len(filled):  # the defaults of the parameters before it are not all known here
            raise BadInput(f"arguments.{i}: name the folder ({parameter['name']}) and the arguments before it")
        folder = resolve_path("output_dir", f"{posixpath.splitext(output_file)[0]}_files")
        filled[i:i + 1] = [folder]
    return filled


def _files_in(folders: list[Path]) -> dict[Path, tuple[int, int, int]]:
    """Every regular file below ``folders``, by what tells a file rewritten (inode, size, mtime)."""
    found: dict[Path, tuple[int, int, int]] = {}
    for folder in dict.fromkeys(folders):
        for top, dirs, names in os.walk(folder):  # links to folders are not followed
            # Hidden ones are another write's staging (ifcservices.staging), not yet an output.
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in (n for n in names if not n.startswith(".")):
                path = Path(top, name)
                st = path.lstat()
                if stat.S_ISREG(st.st_mode):
                    found[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


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
    folders: list[Path] = []
    resolve_path = _path_resolver(ctx, request.output_file, folders)
    try:
        arguments = coerce(request.recipe, doc["parameters"], request.arguments, resolve_path)
    except ArgumentRefused as exc:
        where = f"arguments.{exc.index}" if exc.index is not None else "arguments"
        raise BadInput(f"{where}: {exc.message}") from None
    arguments = _with_folders(doc["parameters"], arguments, request.output_file, resolve_path)
    ctx.progress(2, "opening model")
    input_path = ctx.input(request.input_file)
    model = open_ifc(input_path, request.input_file)
    before = _files_in(folders)
    ctx.progress(20, f"running {request.recipe}")
    output = _execute(request, model, input_path, arguments, custom_dir)
    # What the recipe wrote into its folders are outputs of the job like its file (listed in the result,
    # published on S3), after it: the first output is the job's main one (the RQ shape's output_path).
    # Files an earlier run left there are not, nor the output file when it is written into the folder.
    written = [path for path, seen in _files_in(folders).items() if before.get(path) != seen]
    ctx.progress(85, "writing output")
    size = None
    if output is not None:
        with ctx.output(request.output_file) as staged:
            ifcpatch.write(output, staged)
        size = resolve(ctx.data_dir, request.output_file).stat().st_size
    ctx.output_files.extend(key for key in sorted(relative_to_root(ctx.data_dir, path) for path in written)
                            if key not in ctx.output_files)
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
