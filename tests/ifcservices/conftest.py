"""Fixtures for the IFC services: real models built with ifcopenshell.api, the repository's sample files,
and every service running in-process (ASGI) or as a real ``python -m ifcservices all`` process."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from asgi_lifespan import LifespanManager
from ifcmodels import CONCURRENCY, FIRE_RATING_IDS, GRID, SAMPLES, WALLS, build_walls, grid_walls

from ifcservices import testhooks
from ifcservices.combined import create_combined_app
from tests.real_pipeline import start_services


@pytest.fixture(scope="session", autouse=True)
def _test_hooks() -> Iterator[None]:
    """Crash and slow-down markers for this suite only; set before the fork server starts."""
    previous = os.environ.get(testhooks.ENV_VAR)
    os.environ[testhooks.ENV_VAR] = "1"
    yield
    if previous is None:
        os.environ.pop(testhooks.ENV_VAR, None)
    else:
        os.environ[testhooks.ENV_VAR] = previous


@pytest.fixture(scope="session")
def samples() -> Path:
    if not (SAMPLES / "AC20-FZK-Haus.ifc").is_file():
        pytest.skip(f"sample models not found in {SAMPLES}")
    return SAMPLES


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The services' data directory, with the models every test reads under ``uploads/``."""
    root = tmp_path_factory.mktemp("data")
    uploads = root / "uploads"
    uploads.mkdir()
    walls = build_walls(WALLS)
    walls.write(str(uploads / "walls.ifc"))
    (uploads / "fire.ids").write_text(FIRE_RATING_IDS, encoding="utf-8")
    rated = {name: (*wall[:4], {"FireRating": "REI30"}) for name, wall in WALLS.items()}
    build_walls(rated).write(str(uploads / "walls_rated.ifc"))
    build_walls(grid_walls(GRID)).write(str(uploads / "grid.ifc"))
    text = (uploads / "walls.ifc").read_bytes()
    (uploads / "garbage.ifc").write_bytes(b"this is a shopping list, not a building\n")
    (uploads / "truncated.ifc").write_bytes(text[: len(text) // 2])
    for marker in ("__segv__", "__oom__", "__slow3__", "__slow20__"):
        (uploads / f"walls{marker}.ifc").write_bytes(text)
    for sample in ("AC20-FZK-Haus.ifc", "slab-standard-case.ifc"):
        if (SAMPLES / sample).is_file():
            shutil.copyfile(SAMPLES / sample, uploads / sample)
    return root


@pytest.fixture(scope="session")
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Every service in this process, behind httpx's ASGI transport (``/<service>/...``)."""
    app = create_combined_app(data_dir=data_dir, concurrency=CONCURRENCY)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://services", timeout=120) as http:
            yield http


@pytest.fixture(scope="session")
def live_services(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``python -m ifcservices all`` process on a free port; yields its base URL."""
    log_path = tmp_path_factory.mktemp("logs") / "ifcservices.log"
    env = {testhooks.ENV_VAR: "1", "IFCFLOW_SERVICE_CONCURRENCY": str(CONCURRENCY)}
    base, process = start_services(data_dir, log_path, env)
    yield base
    process.stop()


@dataclass(frozen=True)
class S3Services:
    """The real services on the S3 backend: their base URL and what a gateway and worker need to use the
    same bucket (``IFCFLOW_STORAGE_URL``, the endpoint; credentials come from the environment)."""

    url: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def s3_services(data_dir: Path, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Services]:
    """``python -m ifcservices all`` on a bucket of moto's real S3 API server holding the models of
    ``data_dir/uploads`` (put there by a plain S3 client, as any other tool would), with local scratch only."""
    bucket = f"pipeline-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=bucket)
    for path in sorted((data_dir / "uploads").iterdir()):
        if path.is_file():
            client.upload_file(str(path), bucket, f"data/uploads/{path.name}")
    work = tmp_path_factory.mktemp("s3-services")
    storage = {"IFCFLOW_STORAGE_URL": f"s3://{bucket}/data", "IFCFLOW_S3_ENDPOINT_URL": s3_endpoint}
    env = {testhooks.ENV_VAR: "1", "IFCFLOW_SERVICE_CONCURRENCY": str(CONCURRENCY),
           "IFCFLOW_SCRATCH_DIR": str(work / "scratch"), **storage}
    (work / "data").mkdir()
    base, process = start_services(work / "data", work / "ifcservices.log", env)
    yield S3Services(base, storage)
    process.stop()
