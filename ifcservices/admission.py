"""Memory-aware admission: a service starts a job only while its expected memory fits the byte budget.

Slots alone treat a 4 KB model and a 400 MB one alike; with ``IFCFLOW_SERVICE_MEMORY_BUDGET`` set,
each job also reserves its expected footprint, estimated from the operation and its inputs' sizes,
and a job that does not fit is refused with 503 ``busy`` like one without a slot (the fleet's
workers wait it out without counting a try). A job alone is always admitted: a budget smaller than
one job must not stop the service.

The factors are address-space growth of a child (what the memory limit counts), measured with the
service's own "child ended" log lines on AC20-FZK-Haus (2.4 MB) and a 4 KB model:

| operation | small model | FZK-Haus | estimate |
|---|---|---|---|
| ifcconvert, ifcclash | 7 MB | 251 MB, 248 MB | 64 MiB + 100 x input |
| calculate-qtos | 250 MB | 270 MB | 256 MiB + 10 x input (ifc5d's threads reserve their arenas) |
| ifcdiff (both inputs) | — | 261 MB | 64 MiB + 60 x inputs |
| ifc2json, ifccsv | 16 MB | 28 MB, 25 MB | 32 MiB + 10 x input |
| ifcvalidate with rules (peak RSS of a lone process) | 223 MB | 235 MB | 192 MiB + 8 x input |

ifcvalidate's base is the rule executor compiling the schema's rules; a generated 34 MiB model peaked at 382 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.operations import Operation

MIB = 1024**2


@dataclass(frozen=True, slots=True)
class Footprint:
    base: int
    per_input_byte: float


_GEOMETRY = Footprint(64 * MIB, 100.0)
_DATA = Footprint(32 * MIB, 10.0)
FOOTPRINTS: dict[Operation, Footprint] = {
    Operation.ifcconvert: _GEOMETRY,
    Operation.ifcclash: _GEOMETRY,
    Operation.calculate_qtos: Footprint(256 * MIB, 10.0),
    Operation.ifcdiff: Footprint(64 * MIB, 60.0),
    Operation.ifcvalidate: Footprint(192 * MIB, 8.0),
}


def estimate(op: Operation, input_bytes: int, memory_limit: int) -> int:
    """Expected address-space growth of a job; never more than the job may have (``memory_limit``)."""
    footprint = FOOTPRINTS.get(op, _DATA)
    expected = int(footprint.base + footprint.per_input_byte * input_bytes)
    return min(expected, memory_limit) if memory_limit > 0 else expected


class MemoryAdmission:
    """Bytes reserved by running jobs against a budget (0: no budget); touched from the event loop only."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.reserved = 0
        self.jobs = 0

    def try_reserve(self, size: int) -> bool:
        if self.budget > 0 and self.jobs and self.reserved + size > self.budget:
            return False
        self.reserved += size
        self.jobs += 1
        return True

    def release(self, size: int) -> None:
        self.reserved = max(0, self.reserved - size)
        self.jobs = max(0, self.jobs - 1)
