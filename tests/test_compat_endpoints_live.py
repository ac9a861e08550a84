"""ifcpipeline's ifcpatch and download endpoints as the n8n node (n8n-nodes-ifcpipeline 0.6.0) sends them,
end to end: gateway, Redis, worker and a real ``python -m ifcservices ifcpatch`` process, on real models.

The service runs once for the module, with the session's data directory, a folder of custom recipes
and loopback allowed for downloads (IFCFLOW_DOWNLOAD_ALLOWED_NETWORKS), so that a test server on
127.0.0.1 can stand in for the internet; the gateway and worker get the same settings.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ifcopenshell
import pytest
from aiohttp import web

from tests.conftest import (
    API_KEY,
    GATEWAY_COMMAND,
    REPO,
    WORKER_COMMAND,
    WORKERS_KEY,
    Process,
    Shared,
    free_port,
    serve,
    until_seed_ended,
    wait_for,
)
from tests.ifcservices.ifcmodels import WALLS, build_walls

pytestmark = pytest.mark.asyncio
pytest.importorskip("ifcpatch", reason="the ifcpatch service needs ifcpatch (pip install 'ifcpatch>=0.9,<0.10')")

SAMPLES = REPO.parent / "shared" / "samples"
MAX_DOWNLOAD = 1_000_000
CUSTOM_RECIPE = '''
import ifcopenshell


class Patcher:
    def __init__(self, file: ifcopenshell.file, logger, name: str = "Renamed", ifc_class: str = "IfcWall",
                 times: int = 1):
        """Give every element of a class the same name

        :param name: The name each element gets.
        :param ifc_class: The class of the elements to rename.
        :param times: How often the name is repeated.
        """
        self.file, self.name, self.ifc_class, self.times = file, name, ifc_class, times

    def patch(self) -> None:
        for element in self.file.by_type(self.ifc_class):
            element.Name = self.name * self.times

    def get_output(self) -> ifcopenshell.file:
        return self.file
'''


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recipes")
    (folder / "RenameElements.py").write_text(CUSTOM_RECIPE)
    (folder / "_helpers.py").write_text("X = 1\n")  # not a recipe: private modules are left out
    return folder


def _compat_env(recipe_dir: Path) -> dict[str, str]:
    return {
        "IFCFLOW_DOWNLOAD_ALLOWED_NETWORKS": "127.0.0.0/8",
        "IFCFLOW_DOWNLOAD_ALLOWED_HOSTS": "127.0.0.1:*",
        "IFCFLOW_DOWNLOAD_MAX_BYTES": str(MAX_DOWNLOAD),
        "IFCFLOW_IFCPATCH_RECIPE_DIR": str(recipe_dir),
    }


@pytest.fixture(scope="module")
def patch_service(shared: Shared, recipe_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ifcpatch service on the session's data directory; yields its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("ifcpatch") / "service.log"
    env = {**os.environ, **shared.env, **_compat_env(recipe_dir), "IFCFLOW_SERVICE_CONCURRENCY": "2"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ifcservices", "ifcpatch", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(shared.data_dir)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(up, timeout=120, interval=0.1, what="the ifcpatch service")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def compat_env(shared: Shared, patch_service: str, recipe_dir: Path) -> dict[str, str]:
    """The session's environment with the real ifcpatch service and the module's download settings."""
    return {**shared.env, **_compat_env(recipe_dir), "IFCFLOW_IFCPATCH_URL": patch_service}


def _started(process: Process, ready: Callable[[], bool], what: str) -> Process:
    def up() -> bool:
        assert process.alive(), process.log_path.read_text()[-3000:]
        return ready()

    # One gateway and one worker for the module: on a loaded machine each start takes seconds.
    wait_for(up, timeout=120, interval=0.1, what=what)
    return process


@pytest.fixture(scope="module")
def compat_gateway(compat_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("compat-gateway") / "gateway.log"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    process = _started(Process([*GATEWAY_COMMAND, "--port", str(port)], compat_env, log_path), answers, "gateway")
    yield url
    process.stop()


@pytest.fixture(scope="module")
def compat_worker(compat_env: dict[str, str], shared: Shared, tmp_path_factory: pytest.TempPathFactory,
                  ) -> Iterator[Process]:
    shared.stop_worker()  # only this module's worker, with its settings, takes the module's jobs
    before = shared.redis.zcard(WORKERS_KEY)
    log_path = tmp_path_factory.mktemp("compat-worker") / "worker.log"
    process = _started(Process(list(WORKER_COMMAND), compat_env, log_path),
                       lambda: shared.redis.zcard(WORKERS_KEY) > before, "worker")
    yield process
    process.stop()


@pytest.fixture
async def api(compat_gateway: str, compat_worker: Process, data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=compat_gateway, headers={"X-API-Key": API_KEY}, timeout=60) as client:
        yield client


@pytest.fixture
def walls(data_dir: Path) -> Path:
    path = data_dir / "uploads" / "walls.ifc"
    build_walls(WALLS).write(str(path))
    return path


async def node_recipes(api: httpx.AsyncClient) -> dict[str, Any]:
    """The node's getRecipes (and the lookup of is_custom before each run)."""
    r = await api.post("/patch/recipes/list", json={"include_builtin": True, "include_custom": True})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def node_patch(api: httpx.AsyncClient, input_file: str, output_file: str, recipe: str,
                     arguments: list[Any]) -> httpx.Response:
    """The IfcPatch node's execute: is_custom from the listing, then POST /patch/execute."""
    listing = await node_recipes(api)
    found = next((r for r in listing["recipes"] if r["name"] == recipe), None)
    body = {"input_file": input_file, "output_file": output_file, "recipe": recipe,
            "use_custom": bool(found and found["is_custom"]), "arguments": arguments}
    return await api.post("/patch/execute", json=body)


async def test_recipe_listing_reads_every_recipe_with_typed_documented_parameters(api, recipe_dir):
    import ifcpatch

    listing = await node_recipes(api)
    builtin = sorted(p.stem for p in (Path(ifcpatch.__file__).parent / "recipes").glob("[!_]*.py"))
    names = [r["name"] for r in listing["recipes"] if not r["is_custom"]]
    assert names == builtin and listing["builtin_count"] == len(builtin)
    assert listing["custom_count"] == 1 and listing["total_count"] == len(builtin) + 1
    recipes = {r["name"]: r for r in listing["recipes"]}
    extract = recipes["ExtractElements"]
    assert extract["description"] == "Extract certain elements into a new model"
    assert extract["details"].startswith("Extract a subset of elements")
    query, uniqueness = extract["parameters"]
    assert (query["name"], query["type"], query["required"], query["default"]) == ("query", "str", False, "IfcWall")
    assert "filter_elements" in query["description"]
    assert (uniqueness["name"], uniqueness["type"]) == ("assume_asset_uniqueness_by_name", "bool")
    (unit,) = recipes["ConvertLengthUnit"]["parameters"]
    assert unit["type"] == "Literal" and "MILLIMETER" in unit["enum_items"]
    offset = {p["name"]: p for p in recipes["OffsetObjectPlacements"]["parameters"]}
    assert offset["x"]["type"] == "Union[str, float]"
    assert recipes["MergeProjects"]["parameters"][0]["path_role"] == "input"  # files: paths in the data dir
    custom = recipes["RenameElements"]
    assert custom["is_custom"] and custom["description"] == "Give every element of a class the same name"
    assert [(p["name"], p["type"], p["default"], p["description"]) for p in custom["parameters"]] == [
        ("name", "str", "Renamed", "The name each element gets."),
        ("ifc_class", "str", "IfcWall", "The class of the elements to rename."),
        ("times", "int", 1, "How often the name is repeated."),
    ]
    only_builtin = (await api.post("/patch/recipes/list", json={"include_custom": False})).json()
    assert only_builtin["custom_count"] == 0 and only_builtin["builtin_count"] == len(builtin)
    assert (await api.post("/patch/recipes/list")).json()["total_count"] == len(builtin) + 1  # no body: both


async def test_extract_elements_runs_on_the_sample_house_as_the_node_sends_it(api, data_dir):
    sample = SAMPLES / "AC20-FZK-Haus.ifc"
    if not sample.is_file():
        pytest.skip(f"sample model not found in {SAMPLES}")
    # The node uploads, picks the model from its dropdown, and sends its ExtractElements defaults.
    with sample.open("rb") as handle:
        r = await api.post("/upload/ifc", files={"file": ("AC20-FZK-Haus.ifc", handle, "application/x-step")})
    assert r.status_code in (200, 201), r.text
    dropdown = [f for f in (await api.get("/list_directories")).json()["files"] if f.endswith(".ifc")]
    assert "/uploads/AC20-FZK-Haus.ifc" in dropdown
    r = await node_patch(api, "/uploads/AC20-FZK-Haus.ifc", "/output/ifc/Haus_walls.ifc", "ExtractElements",
                         ["IfcWall", True])
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    status = await until_seed_ended(api, job_id)
    assert status["status"] == "finished", status
    result = status["result"]
    assert result["success"] is True and result["recipe"] == "ExtractElements"
    assert result["arguments_used"] == ["IfcWall", True]
    written = data_dir / result["output_path"].lstrip("/")
    assert written.is_file() and written.stat().st_size == result["output_size_bytes"]
    original = ifcopenshell.open(str(sample))
    patched = ifcopenshell.open(str(written))
    walls = {w.GlobalId for w in original.by_type("IfcWall")}
    assert walls and {w.GlobalId for w in patched.by_type("IfcWall")} == walls
    assert not patched.by_type("IfcSlab") and original.by_type("IfcSlab")
    view = (await api.get(f"/jobs/{job_id}")).json()
    assert view["progress"]["percent"] == 100 and view["operation"] == "ifcpatch"
    # The output is an input of the next step, in the form the answer gave it.
    r = await api.post("/create_download_link", json={"file_path": result["output_path"]})
    assert r.status_code == 200, r.text


async def test_generic_arguments_are_typed_and_custom_recipes_run_from_the_recipe_folder(api, walls, data_dir):
    # The node sends every generic argument as text; "2" reaches the recipe as the int it declares.
    r = await node_patch(api, "/uploads/walls.ifc", "renamed.ifc", "RenameElements", ["Wall-", "IfcWall", "2"])
    assert r.status_code == 202, r.text
    status = await until_seed_ended(api, r.json()["job_id"])
    assert status["status"] == "finished", status
    assert status["result"]["is_custom"] is True
    patched = ifcopenshell.open(str(data_dir / "output" / "ifcpatch" / "renamed.ifc"))
    assert {w.Name for w in patched.by_type("IfcWall")} == {"Wall-Wall-"}
    r = await node_patch(api, "walls.ifc", "moved.ifc", "OffsetObjectPlacements", ["10", "0", "0", "false"])
    assert r.status_code == 202, r.text
    assert (await until_seed_ended(api, r.json()["job_id"]))["status"] == "finished"


async def test_bad_recipes_and_arguments_are_refused_at_submit_naming_them(api, walls, shared):
    jobs_before = len(shared.redis.keys("ifcflow:job:*"))
    base = {"input_file": "/uploads/walls.ifc", "output_file": "out.ifc", "use_custom": False}
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"recipe": "NoSuchRecipe"}, ["body", "recipe"]),
        ({"recipe": "ExtractElements", "use_custom": True}, ["body", "recipe"]),
        ({"recipe": "RenameElements"}, ["body", "recipe"]),  # custom, but use_custom false
        ({"recipe": "../../etc/passwd"}, ["body", "recipe"]),
        ({"recipe": "ExtractElements", "arguments": ["IfcWall", True, "extra"]}, ["body", "arguments", 2]),
        ({"recipe": "ExtractElements", "arguments": ["IfcWall", "perhaps"]}, ["body", "arguments", 1]),
        ({"recipe": "ConvertLengthUnit", "arguments": ["PARSEC"]}, ["body", "arguments", 0]),
        ({"recipe": "OffsetObjectPlacements", "arguments": [[1, 2]]}, ["body", "arguments", 0]),
        ({"recipe": "ConvertPropertiesToQuantities", "arguments": []}, ["body", "arguments", 0]),
        ({"recipe": "MergeProjects", "arguments": [["/etc/passwd"]]}, ["body", "arguments", 0]),
        ({"recipe": "MergeProjects", "arguments": [["/uploads/missing.ifc"]]}, ["body", "arguments", 0]),
        ({"recipe": "ExtractElements", "input_version_id": "v1"}, ["body"]),
        ({"recipe": "ExtractElements", "input_file": "/etc/passwd"}, ["body", "input_file"]),
    ]
    for change, loc in cases:
        r = await api.post("/patch/execute", json={**base, **change})
        assert r.status_code == 422, (change, r.status_code, r.text)
        errors = r.json()["detail"]
        assert any(e["loc"][: len(loc)] == loc for e in errors), (change, errors)
        assert "Traceback" not in r.text
    r = await api.post("/patch/execute", json={**base, "recipe": "ExtractElements", "use_world_cords": True})
    assert r.status_code == 422 and "use_world_cords" in r.text
    assert len(shared.redis.keys("ifcflow:job:*")) == jobs_before, "a refused patch makes no job"


@pytest.fixture
async def origin(walls: Path) -> AsyncIterator[str]:
    """A file server on 127.0.0.1 standing in for the internet: files, redirects, errors, a huge file."""
    body = walls.read_bytes()

    async def model(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/x-step")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: the limit must hold while streaming
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(MAX_DOWNLOAD // 65536 + 2):
            await response.write(b"x" * 65536)
        await response.write_eof()
        return response

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["to"])

    async def missing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="no such file")

    app = web.Application()
    app.router.add_get("/files/model.ifc", model)
    app.router.add_get("/files/huge.ifc", huge)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/files/missing.ifc", missing)
    async with serve(app) as url:
        yield url


async def test_download_from_url_fetches_into_uploads_and_answers_as_ifcpipeline(api, origin, walls, data_dir):
    expected = walls.read_bytes()
    # The node's "Download From URL" with its defaults: no output_filename, the URL's name is kept.
    r = await api.post("/download-from-url", json={"url": f"{origin}/files/model.ifc"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["message"] == "File downloaded successfully as model.ifc"
    assert answer["file_path"] == "/uploads/model.ifc" and answer["original_filename"] == "model.ifc"
    assert answer["size_bytes"] == len(expected) and answer["sha256"] == hashlib.sha256(expected).hexdigest()
    assert (data_dir / "uploads" / "model.ifc").read_bytes() == expected
    job = (await api.get(f"/jobs/{answer['job_id']}")).json()
    assert job["status"] == "complete" and job["operation"] == "download_from_url"
    assert job["progress"]["percent"] == 100
    # Redirects are followed (each hop checked), and a name may be given; the file chains on at once.
    target = f"{origin}/files/model.ifc"
    r = await api.post("/download-from-url", json={"url": f"{origin}/redirect?to={target}",
                                                   "output_filename": "Fetched model.ifc"})
    assert r.status_code == 200 and r.json()["file_path"] == "/uploads/Fetched model.ifc", r.text
    r = await node_patch(api, r.json()["file_path"], "fetched_walls.ifc", "ExtractElements", ["IfcWall", True])
    assert r.status_code == 202, r.text
    assert (await until_seed_ended(api, r.json()["job_id"]))["status"] == "finished"
    # A client that does not wait gets the job at once, and where the file will be.
    r = await api.post("/download-from-url", params={"wait": 0},
                       json={"url": f"{origin}/files/model.ifc", "output_filename": "later.ifc"})
    assert r.status_code == 202, r.text
    assert r.json()["file_path"] == "/uploads/later.ifc"
    status = await until_seed_ended(api, r.json()["job_id"])
    assert status["status"] == "finished" and status["result"]["file_path"] == "/uploads/later.ifc"


async def test_download_from_url_refuses_bad_redirects_big_files_and_upstream_errors(api, origin, data_dir):
    port = origin.rsplit(":", 1)[1]
    cases = [
        (f"{origin}/redirect?to=http://169.254.169.254/latest/meta-data/", 422, "169.254.169.254"),
        (f"{origin}/redirect?to=http://localhost:{port}/files/model.ifc", 422, "localhost"),  # off the allowlist
        (f"{origin}/redirect?to=file:///etc/passwd", 422, "http or https"),
        (f"{origin}/files/huge.ifc", 413, "limit"),
        (f"{origin}/files/missing.ifc", 502, "HTTP 404"),
    ]
    for url, status, words in cases:
        r = await api.post("/download-from-url", json={"url": url, "output_filename": "refused.ifc"})
        assert r.status_code == status, (url, r.status_code, r.text)
        assert words in r.json()["detail"] and r.json()["job_id"], (url, r.text)
        assert not (data_dir / "uploads" / "refused.ifc").exists()
    assert not [p for p in (data_dir / "uploads").iterdir() if p.name.startswith(".")], "no partial file is left"
