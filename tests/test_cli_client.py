"""The CLI client (``ifcflow submit|status|watch|cancel|requeue|jobs``) against a real gateway and worker.

Commands run in-process on a thread (``asyncio.to_thread``), so the stand-in service, which lives on the
test's event loop, can answer the worker meanwhile; one test runs the console script as a process.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.client_commands import run_client
from cli.connection import (
    DEFAULT_URL,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    ClientError,
    resolve_connection,
)
from cli.display import BarDisplay, LineDisplay, describe, describe_error, jobs_table, make_display
from cli.gateway import UPLOAD_KINDS, explain_detail, upload_kind, upload_name
from cli.main import parse
from cli.request_body import parse_operation, parse_sets, plan_request, shape_of
from contracts.operations import OPERATIONS, Operation
from tests.conftest import API_KEY, REPO, Behaviour, free_port

GLB = b"glTF-binary-content"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
PROGRESS = [
    {"event": "progress", "percent": 40, "phase": "tessellating"},
    {"event": "result", "result": {"output_files": ["output/ifcconvert/model.glb"]}},
]


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


async def ifcflow(*argv: str, environ: dict[str, str] | None = None) -> Ran:
    """``ifcflow ARGV`` in-process on a thread; ``environ`` is all the environment it sees."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        return run_client(parse(list(argv)), out, err, environ or {})

    code = await asyncio.wait_for(asyncio.to_thread(run), 60)
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(gateway):
    """``ifcflow`` pointed at the test gateway with the test key, through the environment."""
    environ = {"IFCFLOW_URL": gateway, "IFCFLOW_API_KEY": API_KEY}

    async def call(*argv: str) -> Ran:
        return await ifcflow(*argv, environ=environ)

    return call


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "local" / "model.ifc"
    path.parent.mkdir()
    path.write_text("ISO-10303-21;\nDATA;\n#1=IFCWALL('local');\nENDSEC;\nEND-ISO-10303-21;\n")
    return path


def write_output(data_dir: Path, relative: str, content: bytes = GLB) -> None:
    """What the real service would leave in the data directory."""
    target = data_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


# --- submit, follow, download ---------------------------------------------------------------------


async def test_submit_uploads_follows_and_downloads(cli, worker, stub, data_dir, model, tmp_path):
    write_output(data_dir, "output/ifcconvert/model.glb")
    stub.will("/ifcconvert", Behaviour(delay=0.3, stream=PROGRESS))
    dl = tmp_path / "dl"
    ran = await cli("submit", "ifcconvert", str(model), "-o", "model.glb", "--download-dir", str(dl))
    assert ran.code == EXIT_OK, ran.err
    assert (dl / "model.glb").read_bytes() == GLB
    assert ran.lines == [str(dl / "model.glb")]
    # The upload is the local file, and the service got the uploaded path and the output under output/.
    assert (data_dir / "uploads" / "model.ifc").read_text() == model.read_text()
    body = stub.calls_to("/ifcconvert")[0]["body"]
    assert body["input_filename"].endswith("uploads/model.ifc")
    assert body["output_filename"] == "output/ifcconvert/model.glb"
    assert "uploaded" in ran.err and "40% tessellating" in ran.err and "complete" in ran.err
    assert not list(dl.glob(".*.part")), "no partial download is left behind"


async def test_a_failing_job_exits_non_zero_with_the_error(cli, worker, stub, model, tmp_path):
    error = {"type": "invalid_input", "message": "no IfcProject in model.ifc", "status_code": 422}
    stub.will("/ifcconvert", Behaviour(status=422, body={"error": error}))
    ran = await cli("submit", "ifcconvert", str(model), "-o", "model.glb", "--download-dir", str(tmp_path))
    assert ran.code == EXIT_JOB_FAILED
    assert "failed" in ran.err and "no IfcProject in model.ifc" in ran.err and "service ifcconvert" in ran.err
    assert ran.out == ""


async def test_no_wait_prints_the_id_then_status_and_watch_follow_it(cli, worker, stub, data_dir, model, tmp_path):
    write_output(data_dir, "output/ifcconvert/model.glb")
    stub.will("/ifcconvert", Behaviour(delay=0.5, body={"output_files": ["output/ifcconvert/model.glb"]}))
    ran = await cli("submit", "--no-wait", "ifcconvert", str(model), "-o", "model.glb")
    assert ran.code == EXIT_OK, ran.err
    job_id = ran.out.strip()
    assert JOB_ID.match(job_id), ran.out

    watched = await cli("watch", job_id, "--download", "--download-dir", str(tmp_path / "w"))
    assert watched.code == EXIT_OK, watched.err
    assert (tmp_path / "w" / "model.glb").read_bytes() == GLB

    status = await cli("status", job_id)
    assert status.code == EXIT_OK
    assert re.search(r"^status\s+complete$", status.out, re.M), status.out
    assert re.search(r"^output\s+output/ifcconvert/model.glb$", status.out, re.M)
    as_json = json.loads((await cli("status", job_id, "--json")).out)
    assert as_json["job_id"] == job_id and as_json["status"] == "complete"

    # Watching a finished job: its snapshot is terminal, the outputs are listed, nothing downloaded.
    again = await cli("watch", job_id)
    assert again.code == EXIT_OK and again.lines == ["output/ifcconvert/model.glb"]


async def test_cancel_then_requeue(cli, worker, stub, data_dir, model, tmp_path):
    write_output(data_dir, "output/ifcconvert/model.glb")
    stub.will("/ifcconvert", Behaviour(body={"output_files": ["output/ifcconvert/model.glb"]}))
    ran = await cli("submit", "ifcconvert", str(model), "-o", "model.glb", "--set", "defer_by=600", "--no-wait")
    job_id = ran.out.strip()
    assert ran.code == EXIT_OK and JOB_ID.match(job_id), ran.err
    assert re.search(r"^status\s+deferred$", (await cli("status", job_id)).out, re.M)

    cancelled = await cli("cancel", job_id)
    assert cancelled.code == EXIT_OK and cancelled.out.strip() == f"job {job_id} aborted"
    watched = await cli("watch", job_id)
    assert watched.code == EXIT_JOB_FAILED and "aborted" in watched.err
    again = await cli("cancel", job_id)
    assert again.code == EXIT_REFUSED and "already aborted" in again.err

    requeued = await cli("requeue", job_id, "--watch", "--download", "--download-dir", str(tmp_path / "r"))
    assert requeued.code == EXIT_OK, requeued.err
    assert requeued.lines[0].startswith(f"job {job_id} requeued")
    assert (tmp_path / "r" / "model.glb").read_bytes() == GLB
    refused = await cli("requeue", job_id)
    assert refused.code == EXIT_REFUSED and "only failed or aborted jobs" in refused.err


async def test_jobs_lists_recent_jobs_with_filters(cli, worker, stub, model):
    stub.will("/ifc2json", Behaviour(status=422, body={"error": {"type": "x", "message": "not IFC"}}))
    ok = await cli("submit", "ifcconvert", str(model), "-o", "model.glb", "--no-download")
    failed = await cli("submit", "ifc2json", str(model), "-o", "model.json")
    assert ok.code == EXIT_OK and failed.code == EXIT_JOB_FAILED

    listed = await cli("jobs", "--limit", "10")
    assert listed.code == EXIT_OK
    assert listed.lines[0].split() == ["JOB", "OPERATION", "STATUS", "ENQUEUED", "DETAIL"]
    rows = [line.split()[:3] for line in listed.lines[1:]]
    assert [r[1:] for r in rows] == [["ifc2json", "failed"], ["ifcconvert", "complete"]]
    assert "not IFC" in listed.lines[1]

    only_failed = json.loads((await cli("jobs", "--status", "failed", "--json")).out)
    assert [j["operation"] for j in only_failed["jobs"]] == ["ifc2json"]
    by_op = json.loads((await cli("jobs", "--operation", "ifcconvert", "--limit", "1", "--json")).out)
    assert [j["status"] for j in by_op["jobs"]] == ["complete"]
    bad = await cli("jobs", "--status", "sleeping")
    assert bad.code == EXIT_REFUSED and "status: use some of" in bad.err


async def test_files_fill_input_fields_in_order(cli, worker, stub, tmp_path):
    old, new = tmp_path / "old.ifc", tmp_path / "new version.ifc"
    old.write_text("ISO-10303-21;")
    new.write_text("ISO-10303-21;")
    ran = await cli("submit", "ifcdiff", str(old), "--set", "is_shallow=false", str(new), "--no-download")
    assert ran.code == EXIT_OK, ran.err
    body = stub.calls_to("/ifcdiff")[0]["body"]
    assert body["old_file"].endswith("uploads/old.ifc")
    assert body["new_file"].endswith("uploads/new_version.ifc")  # renamed to what the gateway accepts
    assert body["is_shallow"] is False and body["output_file"] == "output/ifcdiff/diff.json"

    ran = await cli("submit", "ifcclash", str(old), str(new), "-o", "clashes.json", "--no-wait")
    assert ran.code == EXIT_OK, ran.err
    await asyncio.wait_for(_until(lambda: stub.calls_to("/ifcclash")), 20)
    (clash_set,) = stub.calls_to("/ifcclash")[0]["body"]["clash_sets"]
    assert [m["file"].rsplit("/", 1)[-1] for m in clash_set["a"]] == ["old.ifc"]
    assert [m["file"].rsplit("/", 1)[-1] for m in clash_set["b"]] == ["new_version.ifc"]


async def _until(predicate):
    while not predicate():
        await asyncio.sleep(0.05)


# --- clear messages ---------------------------------------------------------------------------------


async def test_api_key_problems_are_explained(gateway, model):
    environ = {"IFCFLOW_URL": gateway}
    ran = await ifcflow("jobs", environ=environ)
    assert ran.code == EXIT_REFUSED and "wants an API key" in ran.err and "IFCFLOW_API_KEY" in ran.err
    ran = await ifcflow("--api-key", "wrong", "jobs", environ=environ)
    assert ran.code == EXIT_REFUSED and "refused the API key" in ran.err
    # The WebSocket's own refusal (close code 4403) reads the same.
    ran = await ifcflow("watch", "some-job", "--api-key", "wrong", environ=environ)
    assert ran.code == EXIT_REFUSED and "refused the API key" in ran.err
    # The second of IFCFLOW_API_KEYS is not used, the first is.
    ran = await ifcflow("jobs", environ={**environ, "IFCFLOW_API_KEYS": f"{API_KEY},other"})
    assert ran.code == EXIT_OK, ran.err


async def test_refusals_name_the_field_and_the_reason(cli, model):
    ran = await cli("submit", "ifcconvert", str(model), "-o", "model.xyz")
    assert ran.code == EXIT_REFUSED
    assert "refused the request (422)" in ran.err and "output_filename: unsupported format 'xyz'" in ran.err
    ran = await cli("submit", "ifcclash", str(model), "-o", "c.json", "--set", "tolerance=-1")
    assert ran.code == EXIT_REFUSED and re.search(r"^\s+tolerance: .*greater than or equal to 0", ran.err, re.M)
    ran = await cli("status", "no-such-job")
    assert ran.code == EXIT_REFUSED and "job no-such-job not found" in ran.err
    ran = await cli("watch", "no-such-job")
    assert ran.code == EXIT_REFUSED and "job no-such-job not found" in ran.err


async def test_an_unreachable_gateway_is_explained(model):
    url = f"http://127.0.0.1:{free_port()}"
    ran = await ifcflow("--url", url, "--api-key", "k", "submit", "ifcconvert", str(model), "-o", "m.glb")
    assert ran.code == EXIT_UNREACHABLE and f"cannot reach the gateway at {url}" in ran.err


async def test_command_line_mistakes_are_caught_before_uploading(cli, model, tmp_path, data_dir):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    cases = [
        (["submit", "ifcdiff", str(model)], "ifcdiff takes 2 input file(s): OLD_FILE NEW_FILE; got 1"),
        (["submit", "ifcconvert", str(model)], "needs an output name: -o/--output model.glb"),
        (["submit", "ifcconvert", str(model), "-o", "m.glb", "--set", "colour=red"], "has no such field"),
        (["submit", "ifcconvert", str(tmp_path / "missing.ifc"), "-o", "m.glb"], "no such file here"),
        (["submit", "ifcnothing", str(model)], "unknown operation 'ifcnothing'"),
        (["submit", "ifcconvert", str(notes), "-o", "m.glb"], "cannot tell what to upload it as"),
    ]
    for argv, message in cases:
        ran = await cli(*argv)
        assert ran.code == EXIT_REFUSED and message in ran.err, (argv, ran.err)
    assert sorted(p.name for p in (data_dir / "uploads").iterdir()) == ["model.ifc", "rules.ids"]
    assert (data_dir / "uploads" / "model.ifc").read_text() != model.read_text(), "nothing was uploaded"


async def test_the_console_script_runs_as_a_process(gateway, worker, stub, data_dir, model, tmp_path):
    write_output(data_dir, "output/ifcconvert/model.glb")
    stub.will("/ifcconvert", Behaviour(delay=0.2, stream=PROGRESS))
    env = {"PATH": "/usr/bin:/bin", "IFCFLOW_URL": gateway, "IFCFLOW_API_KEYS": f"{API_KEY},second-key"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "submit", "ifcconvert", str(model), "-o", "model.glb",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert (tmp_path / "model.glb").read_bytes() == GLB
    assert out.decode().strip() == "model.glb"

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "status", "nope", "--url", gateway, "--api-key", "bad",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == EXIT_REFUSED and b"refused the API key" in err


# --- the parts, without a gateway -------------------------------------------------------------------


def test_connection_comes_from_flags_then_environment():
    assert resolve_connection(None, None, {}).url == DEFAULT_URL
    assert resolve_connection(None, None, {}).api_key is None
    env = {"IFCFLOW_URL": "https://ifc.example/api/", "IFCFLOW_API_KEYS": " first , second"}
    conn = resolve_connection(None, None, env)
    assert (conn.url, conn.api_key, conn.ws_base) == ("https://ifc.example/api", "first", "wss://ifc.example/api")
    assert resolve_connection(None, None, {**env, "IFCFLOW_API_KEY": "mine"}).api_key == "mine"
    assert resolve_connection("http://h:1", "flag", {**env, "IFCFLOW_API_KEY": "mine"}) == resolve_connection(
        "http://h:1", "flag", {}
    )
    with pytest.raises(ClientError, match="http:// or https://"):
        resolve_connection("ftp://x", None, {})


def test_every_operation_maps_files_and_output():
    expected = {
        Operation.ifcconvert: (("input_filename",), "output_filename", True),
        Operation.ifcclash: (("previous",), "output_filename", True),
        Operation.ifccsv: (("filename",), "output_filename", True),
        Operation.ifccsv_import: (("ifc_filename", "csv_filename"), "output_filename", False),
        Operation.ifctester: (("ifc_filename", "ids_filename"), "output_filename", True),
        Operation.ifcvalidate: (("ifc_filename",), "output_filename", False),
        Operation.ifcdiff: (("old_file", "new_file"), "output_file", False),
        Operation.ifc2json: (("filename",), "output_filename", True),
        Operation.calculate_qtos: (("input_file",), "output_file", False),
        Operation.ifcpatch: (("input_file",), "output_file", True),
        Operation.ifcpatch_recipes: ((), None, False),
        Operation.download_from_url: ((), None, False),
    }
    assert expected.keys() == set(Operation)
    for op, (inputs, output, required) in expected.items():
        shape = shape_of(op)
        assert (shape.inputs, shape.output, shape.output_required) == (inputs, output, required), op
        assert shape.path == OPERATIONS[op].path
        assert parse_operation(OPERATIONS[op].path) is op and parse_operation(op.value.replace("_", "-")) is op


def test_scheduling_fields_can_be_set_on_every_operation():
    from service.schemas import JobOptions

    assert {"defer_by", "defer_until"} <= set(JobOptions.model_fields)
    for op in Operation:
        assert set(JobOptions.model_fields) <= set(shape_of(op).fields)


def test_set_values_are_json_when_they_parse(tmp_path):
    shape = shape_of(Operation.ifccsv)
    values = parse_sets(["attributes=[\"Name\", \"Tag\"]", "delimiter=;", "null=NA", "query=IfcWall"], shape)
    assert values == {"attributes": ["Name", "Tag"], "delimiter": ";", "null": "NA", "query": "IfcWall"}
    # JSON that does not fit a text field stays text; JSON that fits is JSON.
    values = parse_sets(["query=123", "null=null", "delimiter=1", "defer_by=60"], shape)
    assert values == {"query": "123", "null": "null", "delimiter": "1", "defer_by": 60}
    convert = parse_sets(["verbose=false", "include=[\"IfcWall\"]", "bounds=1024"], shape_of(Operation.ifcconvert))
    assert convert == {"verbose": False, "include": ["IfcWall"], "bounds": "1024"}
    with pytest.raises(ClientError, match="key=value"):
        parse_sets(["nothing"], shape)
    # An input given with --set leaves the files for the other inputs.
    ids = tmp_path / "rules.ids"
    ids.write_text("<ids/>")
    plan = plan_request(shape_of(Operation.ifctester), [ids], "r.json", {"ifc_filename": "uploads/model.ifc"})
    assert plan.body(["uploads/rules.ids"]) == {
        "ifc_filename": "uploads/model.ifc", "ids_filename": "uploads/rules.ids", "output_filename": "r.json",
    }  # fmt: skip


def test_upload_routes_and_names():
    from service.uploads import ALLOWED_SUFFIXES

    assert {kind: frozenset(s for s, k in UPLOAD_KINDS.items() if k == kind) for kind in ALLOWED_SUFFIXES} == (
        ALLOWED_SUFFIXES
    )
    assert upload_kind(Path("A.IFC")) == "ifc" and upload_kind(Path("x.xlsx")) == "csv"
    with pytest.raises(ClientError, match="extension"):
        upload_kind(Path("notes.txt"))
    assert upload_name(Path("my model (v2).ifc")) == "my_model__v2_.ifc"
    assert upload_name(Path("_x.ifc")) == "x.ifc"


def test_fastapi_details_become_field_and_reason():
    detail = [
        {"loc": ["body", "clash_sets", 0, "a"], "msg": "List should have at least 1 item", "type": "too_short"},
        {"loc": ["body"], "msg": "Value error, output_filename: unsupported format 'x'", "type": "value_error"},
        {"loc": ["query", "limit"], "msg": "Input should be less than or equal to 200", "type": "x"},
    ]
    assert explain_detail(detail) == [
        "clash_sets[0].a: List should have at least 1 item",
        "output_filename: unsupported format 'x'",
        "limit: Input should be less than or equal to 200",
    ]
    assert explain_detail("job x not found") == ["job x not found"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_displays():
    view = {"event": "progress", "status": "in_progress", "progress": {"percent": 42.4, "phase": "meshing"}}
    assert describe(view) == "in_progress 42% meshing"
    retry = {"event": "retrying", "status": "queued", "retry": {"attempt": 1, "reason": "busy",
                                                                 "next_try_at": "2030-01-01T00:00:00+00:00"}}
    assert describe(retry).startswith("retrying (try 1 failed: busy; next try at ")
    failed = {"status": "failed", "error": {"message": "boom", "service": "ifcdiff", "type": "x"}}
    assert describe(failed) == "failed"
    assert describe_error(failed) == "boom (service ifcdiff, type x)"

    lines = io.StringIO()
    display = LineDisplay(lines, "job 1")
    for v in (view, view, failed):
        display.update(v)
    assert lines.getvalue().splitlines() == [
        "job 1: in_progress 42% meshing",
        "job 1: failed",
    ]

    tty = _Tty()
    bar = BarDisplay(tty, "job 1")
    bar.update(view)
    bar.close()
    assert tty.getvalue().startswith("\rjob 1 [#############.................]  42% in_progress meshing")
    assert isinstance(make_display(io.StringIO(), "x"), LineDisplay)
    rich = pytest.importorskip("rich")
    assert rich is not None
    shown = make_display(_Tty(), "x")
    assert type(shown).__name__ == "RichDisplay"
    shown.update(view)
    shown.close()


def test_jobs_table_aligns_columns():
    rows = jobs_table([
        {"job_id": "a" * 32, "operation": "ifcconvert", "status": "complete", "result": {"output_files": ["o/x.glb"]}},
        {"job_id": "b", "operation": "ifc2json", "status": "failed", "error": {"message": "not IFC"}},
    ])  # fmt: skip
    assert rows[0].index("OPERATION") == rows[1].index("ifcconvert") == rows[2].index("ifc2json") == 34
    assert rows[1].endswith("o/x.glb") and rows[2].endswith("not IFC")
