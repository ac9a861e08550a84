"""POST /ifcvalidate through the whole pipeline: gateway -> Redis -> arq worker -> ifctester service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from invalid_models import write_broken
from live_env import live_env

from tests.conftest import submit, until


@pytest.fixture
def env(redis_url: str, data_dir: Path, live_services: str) -> dict[str, str]:
    return live_env(redis_url, data_dir, live_services)


async def test_a_validate_job_runs_to_complete_with_its_verdict_counts_and_report(
    worker: Any, api: httpx.AsyncClient, data_dir: Path,
) -> None:
    breaks = write_broken(data_dir / "uploads" / "pipeline_broken.ifc")
    job_id = await submit(api, "/ifcvalidate", {"ifc_filename": "pipeline_broken.ifc"})
    view = await until(api, job_id, timeout=180)
    assert view["status"] == "complete", view
    result = view["result"]
    assert (result["valid"], result["counts"], result["issue_count"]) == (
        False, {"error": len(breaks), "warning": 0}, len(breaks))
    # No output_filename: the JSON report beside the other ifctester outputs.
    assert result["output_files"] == ["output/ifctester/pipeline_broken_validation.json"]
    assert view["progress"]["percent"] == 100
    report = await api.get("/files/output/ifctester/pipeline_broken_validation.json")
    assert report.status_code == 200 and json.loads(report.content)["issue_count"] == len(breaks)


async def test_a_request_naming_a_missing_file_is_a_422_naming_the_field(
    api: httpx.AsyncClient, sync_redis: Any,
) -> None:
    response = await api.post("/ifcvalidate", json={"ifc_filename": "no-such-model.ifc"})
    assert response.status_code == 422, response.text
    assert "ifc_filename" in response.text
    assert not sync_redis.keys("arq:job:*")  # nothing was enqueued


async def test_a_report_format_it_cannot_write_is_a_422_naming_output_filename(api: httpx.AsyncClient) -> None:
    response = await api.post("/ifcvalidate", json={"ifc_filename": "walls.ifc", "output_filename": "report.xlsx"})
    assert response.status_code == 422, response.text
    assert "output_filename" in response.text and "xlsx" in response.text
