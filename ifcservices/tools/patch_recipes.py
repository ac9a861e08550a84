"""``POST /patch/recipes/list`` on the ifcpatch service: every recipe, read from the recipes themselves."""

from __future__ import annotations

from typing import Any

from contracts.compat_requests import IfcPatchRecipesRequest
from ifcservices.context import TaskContext
from ifcservices.tools.recipe_docs import listing
from settings import get_settings


def run(request: IfcPatchRecipesRequest, ctx: TaskContext) -> dict[str, Any]:
    """List ifcpatch's recipes and the custom ones of ``IFCFLOW_IFCPATCH_RECIPE_DIR``."""
    ctx.progress(1, "reading recipes")
    custom_dir = get_settings().ifcpatch_recipe_dir
    result = listing(request.include_builtin, request.include_custom, custom_dir)
    result["output_files"] = []
    return result
