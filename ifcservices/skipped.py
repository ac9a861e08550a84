"""Elements a tool could not process, skipped and reported instead of failing the whole job.

Real models carry a few broken elements (a wall whose openings cut it away entirely, a property of the
wrong type): a take-off or a conversion of the other thousands is still worth having. Each tool
collects what it skipped here and returns ``as_result()`` in its result; only a job where nothing at
all could be done fails (``fail_if_nothing_done``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ifcopenshell

from ifcservices.errors import NothingProcessed
from ifcservices.limits import is_out_of_memory_error

# Elements listed in a result; the count covers them all. A model where most elements fail would
# otherwise make the result as large as the model.
MAX_LISTED = 100
_MAX_ERROR = 500
# A failing batch is split into this many parts first, then halved: a few bad elements among
# thousands cost about twice the work, not once per element.
_FIRST_SPLIT = 16

R = TypeVar("R")


def error_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:_MAX_ERROR]


def describe(element: Any) -> dict[str, Any]:
    """How an element is named in a report: GlobalId, class, name, STEP id."""
    return {
        "global_id": getattr(element, "GlobalId", None),
        "ifc_class": element.is_a(),
        "name": getattr(element, "Name", None),
        "id": element.id(),
    }


@dataclass
class Skipped:
    """Elements skipped, each with the error that made it so."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    # GlobalId and STEP id: the elements of a clash may come from several models.
    _seen: set[tuple[str, int]] = field(default_factory=set)

    @staticmethod
    def _key(element: ifcopenshell.entity_instance) -> tuple[str, int]:
        return str(getattr(element, "GlobalId", "")), element.id()

    def add(self, element: ifcopenshell.entity_instance, error: str) -> None:
        if self._key(element) in self._seen:
            return
        self._seen.add(self._key(element))
        self.count += 1
        if len(self.entries) < MAX_LISTED:
            self.entries.append({**describe(element), "error": error[:_MAX_ERROR]})

    def __contains__(self, element: ifcopenshell.entity_instance) -> bool:
        return self._key(element) in self._seen

    def as_result(self) -> dict[str, Any]:
        return {"count": self.count, "elements": self.entries}


def fail_if_nothing_done(what: str, attempted: int, skipped: Skipped) -> None:
    """Raise when every one of ``attempted`` elements failed: then the job did nothing at all."""
    if attempted and skipped.count >= attempted:
        first = skipped.entries[0]
        raise NothingProcessed(
            f"{what}: all {attempted} elements failed; the first, {first['ifc_class']} {first['global_id']}: "
            f"{first['error']}"
        )


def isolate(
    elements: Sequence[ifcopenshell.entity_instance],
    attempt: Callable[[list[ifcopenshell.entity_instance]], R],
    skipped: Skipped,
    parts: int = _FIRST_SPLIT,
) -> list[R]:
    """``attempt`` on all ``elements`` at once; when it raises, on smaller and smaller batches until each
    failing element is alone, which is then added to ``skipped``. The results of the batches that
    succeeded, in order."""
    if not elements:
        return []
    try:
        return [attempt(list(elements))]
    except Exception as exc:  # ifcopenshell and its tools raise anything from ValueError to RuntimeError
        if is_out_of_memory_error(exc):
            raise  # the job's memory limit: smaller batches would only hit it again
        if len(elements) == 1:
            skipped.add(elements[0], error_text(exc))
            return []
    size = -(-len(elements) // min(parts, len(elements)))
    results: list[R] = []
    for start in range(0, len(elements), size):
        results += isolate(elements[start : start + size], attempt, skipped, parts=2)
    return results
