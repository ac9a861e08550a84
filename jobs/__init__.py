"""arq workers: ``arq jobs.WorkerSettings`` runs one.

``WorkerSettings`` is built on first access, not at import, so settings are read when the worker
starts (and a bad value stops it with one clear line) rather than whenever this package is imported.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        from jobs import claims
        from jobs.worker import build_worker_settings, use_uvloop
        from settings import load_settings_or_exit

        worker_settings = build_worker_settings(load_settings_or_exit())
        use_uvloop()
        claims.install()
        return worker_settings
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")
