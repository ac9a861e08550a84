"""Resident memory of processes, read from /proc (Linux): current, peak, and peaks sampled over a tree."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

MIB = 1024 * 1024


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb(pid: int) -> float | None:
    """Current resident set size in MiB, None when the process is gone."""
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size over the process's life (VmHWM) in MiB."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024


def children(pid: int) -> list[int]:
    """Direct and indirect children of ``pid``."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                for child in (task / "children").read_text().split():
                    found.append(int(child))
                    found.extend(children(int(child)))
    return found


class RssSampler:
    """Samples the RSS of the given processes and their children; keeps the largest single-process value.

    VmHWM covers a long-lived process; this also catches short-lived children (RQ's forked work horses).
    """

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        self.pids = pids
        self.interval = interval
        self.max_child_mb = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            for pid in self.pids:
                for child in children(pid):
                    self.max_child_mb = max(self.max_child_mb, rss_mb(child) or 0.0)
            await asyncio.sleep(self.interval)
