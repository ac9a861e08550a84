"""Job statistics kept in Redis: what gateways and workers count, and how a gateway reads it back."""

from __future__ import annotations

import bisect
from typing import Any, Literal

from store import keys

Outcome = Literal["enqueued", "completed", "failed", "retried", "aborted"]
OUTCOMES: tuple[Outcome, ...] = ("enqueued", "completed", "failed", "retried", "aborted")
HistogramName = Literal["duration", "queue_wait"]

# Seconds. IFC jobs run from well under a second (JSON of a small model) to hours (federated clash).
BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def bucket_field(seconds: float) -> str:
    """The hash field of the smallest bucket holding ``seconds`` (``+Inf`` past the last)."""
    i = bisect.bisect_left(BUCKETS, seconds)
    return repr(float(BUCKETS[i])) if i < len(BUCKETS) else "+Inf"


def add_count(pipe: Any, operation: str, outcome: Outcome) -> None:
    pipe.hincrby(keys.STATS_COUNTS, f"{operation}:{outcome}", 1)


def add_observation(pipe: Any, name: HistogramName, operation: str, seconds: float) -> None:
    key = keys.stats_histogram(name, operation)
    pipe.hincrby(key, bucket_field(seconds), 1)
    pipe.hincrbyfloat(key, "sum", seconds)
    pipe.hincrby(key, "count", 1)


def cumulative_buckets(raw: dict[str, str]) -> tuple[list[tuple[str, float]], float]:
    """Prometheus' cumulative ``(le, count)`` pairs and the sum, from one stored histogram hash."""
    running = 0.0
    out: list[tuple[str, float]] = []
    for bound in BUCKETS:
        running += float(raw.get(repr(float(bound)), 0))
        out.append((repr(float(bound)), running))
    running += float(raw.get("+Inf", 0))
    out.append(("+Inf", running))
    return out, float(raw.get("sum", 0.0))
