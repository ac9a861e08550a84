"""Retry delays: exponential backoff with full jitter, so retries from many jobs do not arrive together."""

from __future__ import annotations

import random


def retry_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before try ``attempt + 1``; a service's ``Retry-After`` is a floor."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
