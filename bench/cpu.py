"""CPU time of worker processes, read from /proc (Linux): what a job costs, whatever else the cores run.

On a machine shared with other work, jobs/s measure the share of the cores a worker got as much as the
worker; CPU seconds per job do not depend on that share (much), so scenarios report both.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.rss import children

_TICK = os.sysconf("SC_CLK_TCK")


def _times(pid: int) -> tuple[float, float]:
    """(own user+system seconds, reaped children's user+system seconds) of ``pid``; zeros when gone."""
    try:
        # The command name (field 2) may hold spaces: the fields after its closing parenthesis are fixed.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime) / _TICK, (cutime + cstime) / _TICK


def own_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` itself (not its children)."""
    return _times(pid)[0]


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by ``pids``, their live descendants and the children they reaped
    (RQ's work horses, one per job, are reaped by the worker; prefork's pool lives on)."""
    total = 0.0
    for pid in pids:
        own, reaped = _times(pid)
        total += own + reaped
        total += sum(_times(child)[0] for child in children(pid))
    return total
