"""Memory and CPU limits of one child process, so that a hostile model fails its own job and nothing else.

A 13 KB model of nested mapped items, or a few KB of boolean operations referring to each other, can
take a child to all the host's memory or keep it busy for hours. Each child therefore runs under
``RLIMIT_AS`` (its address space: allocations past it fail, in Python and in ifcopenshell's C++ alike)
and ``RLIMIT_CPU`` (the kernel sends SIGXCPU once the budget is used up, SIGKILL shortly after).

The memory limit counts from the child's start: a child begins with the address space of its fork
server, which has every tool of the service imported (0.3 GB for ifcconvert alone, 1.4 GB once
ifcdiff's dependencies are loaded, mostly reserved and never resident), so "4 GiB" is what the job
itself may add, the same for every service.

The CPU budget grows with the size of the job's inputs, so that a large real model gets the time it
needs while a tiny hostile one is stopped within a minute. It counts the CPU of all the child's
threads together: a job with two geometry threads uses it up twice as fast, so a hostile model is
stopped within the budget in wall time however many threads it was given.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024**2
GIB = 1024**3
# After the soft CPU limit (SIGXCPU) the kernel kills with SIGKILL at the hard one: a child that
# ignored SIGXCPU still ends.
_CPU_HARD_GRACE = 5
# A child that crashed with its address space this close to the limit ran out of it: an allocation
# past the limit fails wherever it happens, and C++ code may abort or crash instead of raising.
NEAR_MEMORY_LIMIT = 0.9


@dataclass(frozen=True, slots=True)
class JobLimits:
    """Limits per operation: 0 turns one off."""

    memory_bytes: int = 4 * GIB
    cpu_seconds: int = 60
    # Extra CPU seconds per MiB of input, so that large real models are not cut short.
    cpu_seconds_per_mib: float = 60.0
    # Per service, not per job: the expected memory of its running jobs together
    # (``ifcservices.admission``); 0 admits by slots alone.
    memory_budget: int = 0

    def cpu_budget(self, input_bytes: int) -> int:
        """CPU seconds, of all its threads together, a job with ``input_bytes`` of inputs may use."""
        if self.cpu_seconds <= 0:
            return 0
        return max(1, int(self.cpu_seconds + self.cpu_seconds_per_mib * input_bytes / MIB))


def describe_bytes(size: int) -> str:
    """``4 GiB``, ``512 MiB``: how the limit is named in error messages."""
    if size % GIB == 0:
        return f"{size // GIB} GiB"
    if size >= GIB:
        return f"{size / GIB:.1f} GiB"
    return f"{max(1, round(size / MIB))} MiB"


def memory_message(limit: int) -> str:
    return f"exceeded the memory limit of {describe_bytes(limit)}"


def cpu_message(seconds: int) -> str:
    return f"exceeded {seconds} s of CPU"


def address_space(pid: int | str = "self") -> int:
    """The address space of a process in bytes (VmSize), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def apply_in_child(memory_bytes: int, cpu_seconds: int) -> None:
    """Set the limits on the calling process (a fresh child, before it opens any model)."""
    if memory_bytes > 0:
        ceiling = address_space() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + _CPU_HARD_GRACE))
        # The default action of SIGXCPU is to die, which is what we want; make sure nothing inherited
        # a handler that would carry on.
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signal.SIGXCPU, signal.SIG_DFL)


def is_out_of_memory_error(exc: BaseException) -> bool:
    """A Python ``MemoryError`` or a C++ ``std::bad_alloc`` passed on by ifcopenshell's bindings."""
    return isinstance(exc, MemoryError) or "bad_alloc" in str(exc) or "bad allocation" in str(exc)
