"""arq workers. Run one with ``python -m jobs`` (batch claims, ``jobs/arq_adapter.py``) or with arq's
own CLI, ``arq jobs.WorkerSettings`` (arq's claims); both use the ``WorkerSettings`` below.

Settings are read when this package is imported, as arq's ``WorkerSettings`` are; a bad value stops
the process with one line naming the variable.
"""

from __future__ import annotations

from jobs import hooks, lifecycle, worker
from settings import load_settings_or_exit
from store.serialization import deserialize, serialize

_settings = load_settings_or_exit()


class WorkerSettings:
    """What arq's ``Worker`` is made with (arq reads these class attributes)."""

    functions = worker.functions(_settings)
    cron_jobs = worker.cron_jobs(_settings)
    on_startup = lifecycle.startup
    on_shutdown = lifecycle.shutdown
    on_job_start = hooks.on_job_start
    after_job_end = hooks.after_job_end
    queue_name = _settings.queue_name
    max_jobs = _settings.max_jobs
    keep_result = _settings.result_ttl
    max_tries = _settings.max_tries
    # Aborts come over pubsub (jobs/aborts.py): arq's check would cost every idle poll 2 commands.
    allow_abort_jobs = False
    job_serializer = serialize
    job_deserializer = deserialize
    poll_delay = _settings.poll_delay
    handle_signals = True
    job_completion_wait = _settings.shutdown_wait
    redis_settings = worker.redis_settings(_settings)
