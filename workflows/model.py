"""What a workflow is: steps, their dependencies and references to earlier results; checked whole."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from pydantic import BaseModel, Field, model_validator

from contracts.operations import Operation
from store.job_store import Priority

# "${step.key.0.key}": a value from an earlier step's result, put where the string stands.
REFERENCE = re.compile(r"\$\{([A-Za-z0-9_-]+)((?:\.[A-Za-z0-9_-]+)*)\}")
STEP_ID = r"^[A-Za-z0-9_-]{1,64}$"


class Step(BaseModel):
    id: str = Field(pattern=STEP_ID)
    operation: Operation
    arguments: dict[str, Any]
    depends_on: list[str] = Field(default_factory=list, max_length=100)


class WorkflowRequest(BaseModel):
    """A DAG of steps; a step may use ``${other.output_files.0}`` in its arguments (which makes it
    depend on ``other``)."""

    steps: list[Step] = Field(min_length=1, max_length=100)
    priority: Priority = "normal"
    defer_by: float | None = Field(None, ge=0, le=365 * 86400)
    callback_url: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _a_dag(self) -> WorkflowRequest:
        ids = [s.id for s in self.steps]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"steps: duplicate id {sorted(duplicates)[0]!r}")
        known = set(ids)
        for step in self.steps:
            for dep in dependencies(step):
                if dep not in known:
                    raise ValueError(f"step {step.id!r}: depends on unknown step {dep!r}")
                if dep == step.id:
                    raise ValueError(f"step {step.id!r}: depends on itself")
        cycle = find_cycle(self.steps)
        if cycle:
            raise ValueError(f"step {cycle!r}: is part of a dependency cycle")
        return self


def references(value: Any) -> set[str]:
    """Step ids referenced anywhere in ``value``."""
    if isinstance(value, str):
        return {m.group(1) for m in REFERENCE.finditer(value)}
    if isinstance(value, dict):
        return set().union(*(references(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    return set()


def dependencies(step: Step) -> set[str]:
    return set(step.depends_on) | references(step.arguments)


def find_cycle(steps: list[Step]) -> str | None:
    """A step on a cycle, or None (Kahn's algorithm: whatever cannot be ordered is on or after one)."""
    deps = {s.id: dependencies(s) for s in steps}
    waiting = {s: len(d) for s, d in deps.items()}
    ready = deque(s for s, n in waiting.items() if n == 0)
    ordered = 0
    while ready:
        done = ready.popleft()
        ordered += 1
        for step, d in deps.items():
            if done in d:
                waiting[step] -= 1
                if waiting[step] == 0:
                    ready.append(step)
    if ordered == len(steps):
        return None
    return next(s for s in (st.id for st in steps) if waiting[s] > 0)


class ReferenceError_(ValueError):
    """A reference that names no value in the referenced step's result."""


def resolve(value: Any, results: dict[str, dict[str, Any]]) -> Any:
    """``value`` with every reference replaced from ``results`` (step id -> result)."""
    if isinstance(value, dict):
        return {k: resolve(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, results) for v in value]
    if not isinstance(value, str):
        return value
    whole = REFERENCE.fullmatch(value)
    if whole:
        return _lookup(whole, results)
    return REFERENCE.sub(lambda m: str(_lookup(m, results)), value)


def _lookup(match: re.Match[str], results: dict[str, dict[str, Any]]) -> Any:
    step, path = match.group(1), [p for p in match.group(2).split(".") if p]
    current: Any = results[step]
    for part in path:
        try:
            current = current[int(part)] if isinstance(current, list) else current[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ReferenceError_(f"{match.group(0)}: the result of {step!r} has no {part!r}") from None
    return current
