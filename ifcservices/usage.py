"""What a running child uses, read from /proc by the service: the peak address space and the CPU time.

A child killed by its limits cannot always say so itself (a C++ allocation failure may abort it, the
kernel's SIGKILL leaves no last word): the service samples the child while it runs and tells from the
last samples which limit it hit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ifcservices.limits import address_space

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ChildUsage:
    """Peaks seen so far of one child; ``sample`` is cheap (two small /proc reads). The first sample,
    taken as the child starts, is the address space its memory limit counts from."""

    pid: int
    start_address_space: int = 0
    peak_address_space: int = 0
    cpu_seconds: float = 0.0

    @property
    def grown(self) -> int:
        """Bytes of address space the child added since its start: what its memory limit bounds."""
        return max(0, self.peak_address_space - self.start_address_space)

    def sample(self) -> None:
        size = address_space(self.pid)
        if not size:
            return  # the child has ended (or is a zombie): keep the last samples
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
                # The command name (field 2) may hold spaces: the fields that follow start after ')'.
                fields = stat.read().rpartition(")")[2].split()
            cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        except (OSError, ValueError, IndexError):
            return  # the child has ended (or is a zombie): keep the last samples
        self.start_address_space = self.start_address_space or size
        self.peak_address_space = max(self.peak_address_space, size)
        self.cpu_seconds = max(self.cpu_seconds, cpu)
