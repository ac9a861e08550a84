"""Progress from a child process to its service: small messages on a pipe, throttled.

Messages stay far below the pipe's atomic write size, and the service drains the pipe as they come,
so a child never blocks on progress however long it runs.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Protocol

_MIN_INTERVAL = 0.25  # seconds between two messages with the same phase
_MAX_PHASE = 200


class ProgressFn(Protocol):
    def __call__(self, percent: float, phase: str = ...) -> None: ...


class PipeProgress:
    """Sends ``(percent, phase)`` to the service when the phase changes or a whole percent is gained."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._percent = -1.0
        self._phase = ""
        self._sent_at = 0.0

    def __call__(self, percent: float, phase: str = "") -> None:
        percent = max(self._percent, min(100.0, max(0.0, float(percent))))
        phase = (phase or self._phase)[:_MAX_PHASE]
        now = time.monotonic()
        changed_phase = phase != self._phase
        if not changed_phase and (int(percent) <= int(self._percent) or now - self._sent_at < _MIN_INTERVAL):
            return
        self._percent, self._phase, self._sent_at = percent, phase, now
        try:
            self._conn.send((round(percent, 1), phase))
        except (BrokenPipeError, OSError):
            pass  # the service stopped listening (request cancelled): the work itself goes on or is killed


def scaled(progress: ProgressFn, start: float, end: float) -> ProgressFn:
    """A progress function mapping 0..100 of a sub-step onto ``start..end`` of the whole."""

    def report(percent: float, phase: str = "") -> None:
        progress(start + (end - start) * max(0.0, min(100.0, percent)) / 100.0, phase)

    return report
