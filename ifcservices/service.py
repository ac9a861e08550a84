"""One IFC service's state: its data directory, its slots, its child processes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib.metadata import version as package_version
from pathlib import Path

import structlog
from pydantic import ValidationError

from contracts.operations import Operation
from contracts.requests import REQUEST_MODELS, OperationRequest
from ifcservices.child import ChildJob
from ifcservices.confine import check_request_paths
from ifcservices.errors import BadInput
from ifcservices.limiter import SlotLimiter
from ifcservices.runner import ProcessRunner, add_preload
from ifcservices.tools import TOOLS, main_input, modules_of, operations_of

log = structlog.get_logger("ifcservices.service")

# Seconds a busy service asks the worker to wait: long enough not to hammer, short next to a job.
RETRY_AFTER_SECONDS = 5


def _explain(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        loc = ".".join(str(part) for part in item["loc"])
        parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
    more = f" (and {error.error_count() - 5} more)" if error.error_count() > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


class ServiceRuntime:
    """What the routes of one service share; ``concurrency`` 0 means one slot per CPU core."""

    def __init__(self, service: str, *, data_dir: Path, concurrency: int = 0) -> None:
        self.service = service
        self.data_dir = data_dir
        self.operations = operations_of(service)
        if not self.operations:
            raise ValueError(f"unknown service {service!r}")
        cores = os.cpu_count() or 1
        self.limiter = SlotLimiter(concurrency or cores)
        # Geometry threads per child: together the children use the cores, not cores x slots.
        self.threads = max(1, cores // self.limiter.capacity)
        self.runner = ProcessRunner()
        add_preload(modules_of(service))

    def parse(self, op: Operation, body: bytes) -> OperationRequest:
        """Validate a request body and its paths; ``BadInput`` (422) explains what is wrong."""
        try:
            data = json.loads(body or b"null")
        except ValueError:
            raise BadInput("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadInput("request body must be a JSON object")
        try:
            request = REQUEST_MODELS[op].model_validate(data)
        except ValidationError as exc:
            raise BadInput(_explain(exc)) from None
        check_request_paths(request, self.data_dir)
        return request

    async def execute(
        self, op: Operation, request: OperationRequest, on_progress: Callable[[float, str], None] | None
    ) -> bytes:
        """Run ``request`` in a child process; the caller holds a slot, which this releases."""
        try:
            job = ChildJob(
                operation=op.value,
                request=request.model_dump(mode="json", by_alias=True),
                data_dir=str(self.data_dir),
                workdir="",
                threads=self.threads,
            )
            subject = f"{TOOLS[op].verb} {main_input(op, request)}"
            return await self.runner.run(job, crash_subject=subject, on_progress=on_progress)
        finally:
            self.limiter.release()

    def health(self) -> dict[str, object]:
        return {
            "status": "ok",
            "service": self.service,
            "operations": [op.value for op in self.operations],
            "capacity": self.limiter.capacity,
            "active": self.limiter.active,
            "ifcopenshell": package_version("ifcopenshell"),
        }
