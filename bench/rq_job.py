"""The job the RQ baseline runs: the same POST to the same stand-in service, with ``requests`` as RQ code did."""

from __future__ import annotations

from typing import Any

import requests


def call_service(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(url, json=body, timeout=60)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result
