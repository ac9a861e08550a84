"""A full disk fails clearly and leaves nothing half-written: an upload answers 507, an operation whose
output does not fit fails with ``storage full`` (never ``complete`` with a cut-short file), and the
partial files are gone. The disk is a real 1 MiB tmpfs (root only: skipped otherwise)."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from ifcservices.errors import OutputIncomplete, StorageFull
from ifcservices.staging import staged_output
from tests.conftest import API_KEY, Behaviour, submit, until
from tests.ifcservices.ifcmodels import build_walls, grid_walls
from tests.real_pipeline import Pipeline, real_pipeline

DISK_BYTES = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs as the data directory, with the uploads/ and output/ folders the gateway makes."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until about ``leave`` bytes are free; the filler file, to remove for room."""
    st = os.statvfs(disk)
    filler = disk / "filler.bin"
    filler.write_bytes(bytes(max(0, st.f_bavail * st.f_frsize - leave)))
    return filler


def leftovers(disk: Path) -> list[str]:
    """Temporaries anywhere on the disk: staging folders, partial uploads."""
    return [str(p.relative_to(disk)) for p in disk.rglob("*") if p.name.startswith((".staging-", ".upload-"))]


async def test_a_service_answering_507_fails_the_job_at_once_without_retries(stub, worker, gateway):
    message = "storage full: no space left on device writing output/ifcconvert/model.glb"
    error = {"type": "storage_full", "message": message, "service": "ifcconvert", "status_code": 507}
    stub.will("/ifcconvert", Behaviour(status=507, body={"error": error}))
    async with httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": API_KEY}, timeout=30) as api:
        view = await until(api, await submit(api))
    assert view["status"] == "failed" and view["tries"] == 1, view
    assert view["error"] == error
    assert len(stub.calls_to("/ifcconvert")) == 1


@pytest.fixture
def pipeline(redis_url: str, small_disk: Path, tmp_path: Path, sync_redis: redis.Redis) -> Iterator[Pipeline]:
    with real_pipeline(redis_url, small_disk, tmp_path, sync_redis) as running:
        yield running


@pytest.fixture
async def api(pipeline: Pipeline) -> Iterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pipeline.url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
        yield c


async def test_an_upload_onto_a_full_disk_answers_507_and_leaves_no_partial_file(api, pipeline, small_disk):
    fill(small_disk, leave=64 * 1024)
    r = await api.post("/upload/ifc", files={"file": ("big.ifc", b"x" * (256 * 1024))})
    assert r.status_code == 507, r.text
    assert r.json()["detail"] == "storage full: no space left on device writing uploads/big.ifc"
    assert not (small_disk / "uploads" / "big.ifc").exists()
    assert leftovers(small_disk) == []
    lines = pipeline.gateway.process.log_lines()
    [warning] = [line for line in lines if line.get("event") == "upload.storage_full"]
    assert warning["level"] == "warning"
    assert not [line for line in lines if line.get("level") == "error"]
    # Room again: the same upload goes through.
    (small_disk / "filler.bin").unlink()
    r = await api.post("/upload/ifc", files={"file": ("big.ifc", b"x" * (256 * 1024))})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("output", ["grid.glb", "grid.obj"])
async def test_a_convert_whose_output_does_not_fit_fails_with_storage_full_and_leaves_nothing(
    api, small_disk, output
):
    build_walls(grid_walls(30)).write(str(small_disk / "uploads" / "grid.ifc"))
    body = {"input_filename": "grid.ifc", "output_filename": output}
    # How big the output is with room, then a disk with a quarter of that free.
    whole = await until(api, await submit(api, "/ifcconvert", body), timeout=120)
    assert whole["status"] == "complete", whole
    size = (small_disk / "output" / "ifcconvert" / output).stat().st_size
    assert size > 32 * 1024, "the model must make an output well over a few blocks"
    for produced in (small_disk / "output" / "ifcconvert").iterdir():
        produced.unlink()
    filler = fill(small_disk, leave=size // 4)

    view = await until(api, await submit(api, "/ifcconvert", body), timeout=120)
    assert view["status"] == "failed", view
    error = view["error"]
    assert error["type"] == "storage_full" and error["status_code"] == 507, error
    assert error["message"].startswith(f"storage full: no space left on device writing output/ifcconvert/{output}")
    assert view["tries"] == 1 and view["retry"] is None, "a full disk is not retried"
    assert list((small_disk / "output" / "ifcconvert").iterdir()) == []
    assert leftovers(small_disk) == []

    # Room again: requeued, the same job completes with a whole output.
    filler.unlink()
    r = await api.post(f"/jobs/{view['job_id']}/requeue")
    assert r.status_code in (200, 202), r.text
    again = await until(api, view["job_id"], timeout=120)
    assert again["status"] == "complete", again
    data = (small_disk / "output" / "ifcconvert" / output).read_bytes()
    assert len(data) == size
    if output.endswith(".glb"):
        assert struct.unpack("<4sII", data[:12]) == (b"glTF", 2, len(data))


# Without root: the same checks on staged_output itself, with writers that fail as on a full disk.

def test_a_writer_failing_with_enospc_raises_storage_full_and_commits_nothing(tmp_path):
    final = tmp_path / "output" / "ifcconvert" / "model.obj"
    with pytest.raises(StorageFull) as raised:
        with staged_output(final) as (temporary, _committed):
            temporary.write_bytes(b"v 0 0 0\n")
            temporary.with_suffix(".mtl").write_bytes(b"newmtl a\n")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert raised.value.message == "storage full: no space left on device writing model.obj"
    assert raised.value.status_code == 507
    assert list(final.parent.iterdir()) == []


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "the tool wrote an empty model.glb"),
    (struct.pack("<4sII", b"glTF", 2, 5000) + bytes(8), "model.glb is 20 bytes but its header declares 5000"),
])
def test_an_empty_or_short_output_the_writer_called_whole_is_never_committed(tmp_path, content, problem):
    final = tmp_path / "output" / "ifcconvert" / "model.glb"
    with pytest.raises(OutputIncomplete) as raised:
        with staged_output(final) as (temporary, _committed):
            temporary.write_bytes(content)  # the writer "succeeded"
    assert raised.value.message == f"output incomplete: {problem} (writing model.glb)"
    assert list(final.parent.iterdir()) == []


def test_a_full_scratch_disk_in_the_service_is_storage_full_not_an_internal_error():
    from ifcservices.responses import _unexpected

    error = _unexpected(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/ifcservices-job-x"))
    assert isinstance(error, StorageFull) and error.status_code == 507
    assert error.message == "storage full: no space left on device in the IFC service's work folder"
