"""Raw arq, the baseline of the overhead scenario: a no-op function, tuned like ifcflow's worker.

``arq bench.raw_arq.WorkerSettings`` reads the same ``IFCFLOW_*`` settings for ``max_jobs``,
``poll_delay``, ``keep_result`` and ``max_tries``, and uses the same msgpack serializer.
"""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings

from settings import Settings
from store.serialization import deserialize, serialize

QUEUE = "bench:raw-arq"


async def noop(ctx: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Does nothing: what is measured is arq's own cost per job."""
    return {}


def build(settings: Settings) -> type:
    return type(
        "WorkerSettings",
        (),
        {
            "functions": [noop],
            "redis_settings": RedisSettings.from_dsn(settings.redis_url),
            "queue_name": QUEUE,
            "max_jobs": settings.max_jobs,
            "keep_result": settings.result_ttl,
            "max_tries": settings.max_tries,
            "allow_abort_jobs": True,
            "job_serializer": serialize,
            "job_deserializer": deserialize,
            "poll_delay": settings.poll_delay,
        },
    )


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        return build(Settings())
    raise AttributeError(name)
