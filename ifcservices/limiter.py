"""A service's concurrency limit: a slot per child process, refused at once rather than queued.

Queueing belongs to the job queue, whose workers retry a 503 later; a request waiting here would hold
a worker's connection and hide the backlog from everyone.
"""

from __future__ import annotations


class SlotLimiter:
    """Counts running operations; only touched from the event loop, so no lock is needed."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.active = 0

    def try_acquire(self) -> bool:
        if self.active >= self.capacity:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active = max(0, self.active - 1)
