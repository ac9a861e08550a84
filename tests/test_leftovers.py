"""Leftovers of killed processes: a killed child's staging folder, and the sweep of whatever outlives
its process (staging folders, partial uploads)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from ifcservices.staging import STAGING_LIST, list_staging_in, remove_listed, staged_output
from jobs.sweeper import sweep
from tests.conftest import wait_for

HOUR = 3600.0


def _stage_then_die(workdir: str, final: str) -> None:
    """A child as ifcservices runs them, killed (as an abort or a timeout kills it) mid-write."""
    list_staging_in(Path(workdir))
    with staged_output(Path(final)) as (temporary, _):
        temporary.write_bytes(b"half a model")
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_childs_staging_folder_is_removed_by_the_service(tmp_path: Path) -> None:
    data_dir, workdir = tmp_path / "data", tmp_path / "work"
    workdir.mkdir()
    final = data_dir / "output" / "ifcconvert" / "model.glb"
    child = multiprocessing.get_context("fork").Process(target=_stage_then_die, args=(str(workdir), str(final)))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    [left] = final.parent.iterdir()  # what a killed child left before: nobody ever removed it
    assert left.name.startswith(".staging-") and (left / "model.glb").is_file()

    assert remove_listed(workdir, data_dir) == [left]
    assert list(final.parent.iterdir()) == [] and not final.exists()


def test_the_service_removes_only_staging_folders_inside_the_data_directory(tmp_path: Path) -> None:
    # The list is written by a child that parses untrusted models: it cannot make the service delete
    # anything else.
    data_dir, workdir, outside = tmp_path / "data", tmp_path / "work", tmp_path / "outside"
    for folder in (data_dir / "output" / "keep", outside / ".staging-x", workdir):
        folder.mkdir(parents=True)
    (data_dir / "output" / ".staging-link").symlink_to(outside / ".staging-x")
    listed = [data_dir / "output" / "keep", outside / ".staging-x", data_dir / "output" / ".staging-link",
              data_dir / "output" / ".staging-never-made"]
    (workdir / STAGING_LIST).write_text("".join(f"{p}\n" for p in listed))
    assert remove_listed(workdir, data_dir) == []
    assert (data_dir / "output" / "keep").is_dir() and (outside / ".staging-x").is_dir()


def _plant(path: Path, age: float, folder: bool = False) -> Path:
    if folder:
        path.mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return _age(path, age)


def _age(path: Path, age: float) -> Path:
    then = time.time() - age
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def test_the_sweep_removes_old_staging_folders_and_partial_uploads_and_keeps_the_rest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old_staging = _plant(data / "output/ifcconvert/.staging-old", 2 * HOUR, folder=True)
    _age(_plant(old_staging / "model.glb", 2 * HOUR).parent, 2 * HOUR)
    old_upload = _plant(data / "uploads/.upload-abc", 2 * HOUR)
    recent_staging = _plant(data / "output/ifcconvert/.staging-new", 60, folder=True)
    recent_upload = _plant(data / "uploads/.upload-new", 60)
    # A folder made long ago whose tool is still writing its file: in use.
    busy = _plant(data / "output/ifcclash/.staging-busy", 2 * HOUR, folder=True)
    _age(_plant(busy / "clashes.json", 5).parent, 2 * HOUR)
    finished = _plant(data / "output/ifcconvert/model.glb", 2 * HOUR)
    outside = _plant(tmp_path / "outside/.staging-x", 2 * HOUR, folder=True)
    (data / "output/.staging-link").symlink_to(outside)
    _age(data / "output/.staging-link", 2 * HOUR)

    swept = sweep(data, max_age=HOUR)

    assert sorted(swept.staging) == ["output/ifcconvert/.staging-old"] and swept.uploads == ["uploads/.upload-abc"]
    assert not old_staging.exists() and not old_upload.exists()
    for kept in (recent_staging, recent_upload, busy, finished, outside, data / "output/.staging-link"):
        assert kept.exists() or kept.is_symlink(), kept


@pytest.fixture
def env(env: dict[str, str], data_dir: Path) -> dict[str, str]:
    """A worker of this module's own (the sweep runs at its start), jobs capped at 60 s, and leftovers
    from an hour ago in the data directory it will sweep."""
    _plant(data_dir / "output/ifcconvert/.staging-killed", HOUR, folder=True)
    _plant(data_dir / "uploads/.upload-killed", HOUR)
    return {**env, "IFCFLOW_JOB_TIMEOUT": "60", "IFCFLOW_JOB_TIMEOUTS": '{"ifcclash": 60}'}


def test_a_worker_sweeps_leftovers_older_than_the_longest_job_timeout_at_start(worker, data_dir: Path) -> None:
    [removed] = wait_for(lambda: [e for e in worker.log_lines() if e.get("event") == "leftovers.removed"],
                         what="the sweep at the worker's start")
    assert removed["count"] == 2
    assert not (data_dir / "output/ifcconvert/.staging-killed").exists()
    assert not (data_dir / "uploads/.upload-killed").exists()
