"""One IFC service's state: its data directory, its slots, its child processes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import structlog
from pydantic import ValidationError

from contracts.operations import Operation
from contracts.requests import REQUEST_MODELS, OperationRequest
from ifcservices.admission import MemoryAdmission, estimate
from ifcservices.child import ChildJob
from ifcservices.errors import BadInput, Busy
from ifcservices.limiter import SlotLimiter
from ifcservices.limits import JobLimits
from ifcservices.runner import ProcessRunner, add_preload
from ifcservices.stored import Input, StoreAccess
from ifcservices.tools import TOOLS, main_input, modules_of, operations_of
from settings import get_settings

log = structlog.get_logger("ifcservices.service")

# Seconds a busy service asks the worker to wait: long enough not to hammer, short next to a job.
RETRY_AFTER_SECONDS = 5


def threads_for(cores: int, capacity: int, free_slots: int) -> int:
    """Geometry threads of a job starting with ``free_slots`` slots free, its own included: the cores
    of those slots, so a lone job uses every core and jobs started together share them."""
    return max(1, cores * free_slots // capacity)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A request as checked: its model, and each input by path with the version it reads."""

    request: OperationRequest
    inputs: dict[str, Input]

    @property
    def input_bytes(self) -> int:
        """The size of the inputs together (what a job's CPU budget grows with)."""
        return sum(i.size for i in self.inputs.values())


@dataclass(frozen=True, slots=True)
class Ticket:
    """A job admitted: its slot, and the bytes of the memory budget it reserved."""

    input_bytes: int
    reserved: int


def _gib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB"


def _explain(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        loc = ".".join(str(part) for part in item["loc"])
        parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
    more = f" (and {error.error_count() - 5} more)" if error.error_count() > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


class ServiceRuntime:
    """What the routes of one service share; ``concurrency`` 0 means one slot per CPU core."""

    def __init__(
        self, service: str, *, data_dir: Path, concurrency: int = 0, limits: JobLimits | None = None,
        store: StoreAccess | None = None,
    ) -> None:
        self.service = service
        # The store of uploads and outputs; by default the data directory itself (local backend).
        self.store = store or StoreAccess.from_settings(get_settings(), data_dir)
        self.data_dir = self.store.data_dir
        self.operations = operations_of(service)
        if not self.operations:
            raise ValueError(f"unknown service {service!r}")
        self.cores = os.cpu_count() or 1
        self.limiter = SlotLimiter(concurrency or self.cores)
        self.limits = limits or JobLimits()
        self.memory = MemoryAdmission(self.limits.memory_budget)
        self.runner = ProcessRunner()
        add_preload(modules_of(service))

    async def parse(self, op: Operation, body: bytes) -> Parsed:
        """Validate a request body, its paths and the versions it pins; ``BadInput`` (422) explains
        what is wrong, ``StoreUnavailable`` (503) when the store cannot be asked."""
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
        return Parsed(request, await self.store.check(request))

    def admit(self, op: Operation, parsed: Parsed) -> Ticket:
        """Take a slot and the job's expected memory, or raise ``Busy`` (503) saying which is short."""
        if not self.limiter.try_acquire():
            raise Busy(f"{self.service} is busy: all {self.limiter.capacity} slots are taken")
        size = parsed.input_bytes
        expected = estimate(op, size, self.limits.memory_bytes)
        if not self.memory.try_reserve(expected):
            self.limiter.release()
            raise Busy(
                f"{self.service} is busy: {_gib(self.memory.reserved)} of its {_gib(self.memory.budget)} memory budget "
                f"is reserved by running jobs; this one needs about {_gib(expected)}"
            )
        return Ticket(input_bytes=size, reserved=expected)

    async def execute(
        self,
        op: Operation,
        parsed: Parsed,
        on_progress: Callable[[float, str], None] | None,
        ticket: Ticket,
    ) -> bytes:
        """Run the request in a child process, its inputs staged and its outputs committed to the
        store (``ifcservices.stored``); ``ticket`` (from ``admit``) is released at the end."""
        request = parsed.request
        try:
            # Decided once, at the start: the slots free now (this job's own included) are its cores.
            free = self.limiter.capacity - self.limiter.active + 1
            threads = threads_for(self.cores, self.limiter.capacity, free)
            async with self.store.staged(parsed.inputs, on_progress) as staged:
                job = ChildJob(
                    operation=op.value,
                    request=request.model_dump(mode="json", by_alias=True),
                    data_dir=str(staged.data_dir),
                    workdir="",
                    threads=threads,
                    memory_limit=self.limits.memory_bytes,
                    cpu_limit=self.limits.cpu_budget(ticket.input_bytes),
                    pinned=staged.pinned,
                    geometry_cache_dir=str(staged.geometry_cache_dir or ""),
                )
                subject = f"{TOOLS[op].verb} {main_input(op, request)}"
                raw = await self.runner.run(job, crash_subject=subject, on_progress=on_progress)
                await self.store.commit(staged, raw)
                return raw
        finally:
            self.limiter.release()
            self.memory.release(ticket.reserved)

    def health(self) -> dict[str, object]:
        return {
            "status": "ok",
            "service": self.service,
            "operations": [op.value for op in self.operations],
            "capacity": self.limiter.capacity,
            "active": self.limiter.active,
            "limits": {
                "memory_bytes": self.limits.memory_bytes,
                "cpu_seconds": self.limits.cpu_seconds,
                "cpu_seconds_per_mib": self.limits.cpu_seconds_per_mib,
            },
            # With a budget, fewer than ``capacity`` jobs may run at once: the fleet still sends up to
            # ``capacity`` calls (its slot count), and waits out the 503 busy answers past the budget.
            "memory_budget_bytes": self.memory.budget,
            "memory_reserved_bytes": self.memory.reserved,
            "ifcopenshell": package_version("ifcopenshell"),
            "storage": self.store.health(),
        }
