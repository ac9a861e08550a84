"""The environment of a gateway and worker in front of the real IFC services (the ``live_services``
fixture), for the test modules that run the whole pipeline."""

from __future__ import annotations

from pathlib import Path

from contracts.operations import SERVICES
from tests.conftest import API_KEY


def live_env(redis_url: str, data_dir: Path, live_services: str) -> dict[str, str]:
    """Environment of a gateway and worker in front of the real services (``live_services``)."""
    values = {
        "IFCFLOW_REDIS_URL": redis_url,
        "IFCFLOW_API_KEYS": API_KEY,
        "IFCFLOW_DATA_DIR": str(data_dir),
        "IFCFLOW_POLL_DELAY": "0.05",
        "IFCFLOW_HEARTBEAT_INTERVAL": "1",
        "IFCFLOW_RETRY_BACKOFF": "0.5",
        "IFCFLOW_LOG_JSON": "true",
    }
    for service in SERVICES:
        values[f"IFCFLOW_{service.upper()}_URL"] = f"{live_services}/{service}"
    return values
