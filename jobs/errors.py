"""The two ways a service call fails: worth another try, or not."""

from __future__ import annotations


class TransientServiceError(Exception):
    """Connect error, connect timeout, 429 or 5xx: the same call may well succeed later."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None, busy: bool = False
    ):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        # The service works but every slot is taken: waiting for capacity, not a failed try.
        self.busy = busy
