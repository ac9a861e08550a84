"""ifcpipeline's endpoints that ifcflow adds for its clients (the n8n node first), in the order to include them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.routing import APIRoute

from contracts.operations import OPERATIONS, Operation
from service.routers import compat_download, compat_files, compat_patch, operations

# Before the operations' own routes: /download-from-url and /patch/execute check more, then call those.
COMPAT_ROUTERS: tuple[APIRouter, ...] = (compat_download.router, compat_patch.router, compat_files.router)

# The operations' own routes at these paths are never reached (the routes above answer first): they are
# left out of the API docs, which would otherwise describe them instead of what answers.
_SHADOWED = {OPERATIONS[op].path for op in (Operation.download_from_url, Operation.ifcpatch,
                                             Operation.ifcpatch_recipes)}
for _route in operations.router.routes:
    if isinstance(_route, APIRoute) and _route.path in _SHADOWED:
        _route.include_in_schema = False
