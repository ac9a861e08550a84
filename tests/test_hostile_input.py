"""Hostile input: fuzzed requests, path traversal, oversized and nested bodies, odd job ids, function
names and pickle, auth on every route and socket, secrets in logs, CORS.

Most tests talk to one real gateway process (``uvicorn service.app:app``) shared by the module, so
uvicorn's own HTTP parsing is part of what is tested; the rest run the gateway in-process.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import hypothesis
import pytest
import redis
import schemathesis
from fastapi.routing import APIRoute, APIWebSocketRoute
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from contracts.operations import OPERATIONS, SERVICES, Operation
from contracts.paths import PathRole, path_fields, role_of
from contracts.requests import REQUEST_MODELS
from store.serialization import deserialize
from tests.conftest import (
    API_KEY,
    Behaviour,
    Process,
    StubService,
    free_port,
    start_worker,
    wait_for,
)

QUEUE = "arq:queue"
SECRET = "TOP-SECRET-OUTSIDE-THE-DATA-DIR"
# Examples per operation and generation mode (positive and negative): about 40 s for all routes.
FUZZ_EXAMPLES = int(os.environ.get("IFCFLOW_FUZZ_EXAMPLES", "40"))

# A valid body for every operation, with every optional path field set, so every path field is probed.
VALID_BODIES: dict[Operation, dict[str, Any]] = {
    Operation.ifcconvert: {"input_filename": "model.ifc", "output_filename": "m.glb", "log_file": "convert.log"},
    Operation.ifcclash: {
        "clash_sets": [{"name": "s", "a": [{"file": "model.ifc"}], "b": [{"file": "model.ifc"}]}],
        "output_filename": "c.json",
        "previous": "earlier.json",
    },
    Operation.ifccsv: {"filename": "model.ifc", "output_filename": "x.csv"},
    Operation.ifccsv_import: {"ifc_filename": "model.ifc", "csv_filename": "model.ifc", "output_filename": "u.ifc"},
    Operation.ifctester: {"ifc_filename": "model.ifc", "ids_filename": "rules.ids", "output_filename": "r.json"},
    Operation.ifcvalidate: {"ifc_filename": "model.ifc", "output_filename": "v.json"},
    Operation.ifcdiff: {"old_file": "model.ifc", "new_file": "model.ifc", "output_file": "d.json"},
    Operation.ifc2json: {"filename": "model.ifc", "output_filename": "m.json"},
    Operation.calculate_qtos: {"input_file": "model.ifc", "output_file": "q.ifc"},
    Operation.ifcpatch: {"input_file": "model.ifc", "output_file": "p.ifc", "recipe": "ExtractElements",
                         "arguments": ["IfcWall", True]},
    Operation.download_from_url: {"url": "https://example.com/model.ifc"},
    Operation.ifcpatch_recipes: {},
}
# Operations whose gateway route does more than enqueue (the recipe listing is read from the service, a
# download waits for its job): the loops that expect a plain 202 leave them to their own tests.
PLAIN_SUBMITS = {op: spec for op, spec in OPERATIONS.items()
                 if op not in (Operation.ifcpatch_recipes, Operation.download_from_url)}


# --------------------------------------------------------------------------------------------------
# The data directory, with symlinks planted in it that point out of it


def plant_hostile_files(data_dir: Path, outside: Path) -> None:
    """A secret outside the data dir, and symlinks inside it that lead there (files, folders, dangling)."""
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.ifc").write_text(SECRET)
    (outside / "dir").mkdir(exist_ok=True)
    (outside / "dir" / "secret.ifc").write_text(SECRET)
    uploads = data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / "model.ifc").write_text("ISO-10303-21;\nEND-ISO-10303-21;\n")
    (uploads / "rules.ids").write_text("<ids/>")
    (uploads / "earlier.json").write_text("[]")
    (uploads / "out.ifc").symlink_to(outside / "secret.ifc")
    (uploads / "outdir").symlink_to(outside / "dir", target_is_directory=True)
    (uploads / "root").symlink_to("/", target_is_directory=True)
    (data_dir / "out-root.ifc").symlink_to(outside / "secret.ifc")
    (data_dir / "gone.ifc").symlink_to(outside / "no-such-file.ifc")  # dangling
    for service in SERVICES:
        folder = data_dir / "output" / service
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "escape").symlink_to(outside / "dir", target_is_directory=True)
        (folder / "dangling.glb").symlink_to(outside / "dir" / "new.glb")


def outside_snapshot(outside: Path) -> dict[str, bytes]:
    return {p.relative_to(outside).as_posix(): p.read_bytes() for p in sorted(outside.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# One real gateway for the module


@dataclass
class Gateway:
    url: str
    proc: Process
    data_dir: Path
    outside: Path
    redis: Any  # redis.Redis; redis-py types its sync results as maybe-awaitable

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def jobs_queued(self) -> int:
        return int(self.redis.zcard(QUEUE)) + len(self.redis.keys("arq:job:*"))


def gateway_env(redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "IFCFLOW_REDIS_URL": redis_url,
        "IFCFLOW_API_KEYS": f"{API_KEY},second-key",
        "IFCFLOW_DATA_DIR": str(data_dir),
        "IFCFLOW_LOG_JSON": "true",
        "IFCFLOW_MAX_UPLOAD_BYTES": str(1024 * 1024),
        **extra,
    }
    for service in SERVICES:  # nothing listens there: no worker runs in these tests
        env.setdefault(f"IFCFLOW_{service.upper()}_URL", "http://127.0.0.1:9")
    return env


def start_gateway(env: dict[str, str], log_path: Path) -> tuple[str, Process]:
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port)], env, log_path
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.proc.poll() is not None:
            raise AssertionError(log_path.read_text())
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    wait_for(up, what="gateway")
    return url, proc


@pytest.fixture(scope="module")
def hostile(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    base = tmp_path_factory.mktemp("hostile")
    data_dir, outside = base / "data", base / "outside"
    plant_hostile_files(data_dir, outside)
    url, proc = start_gateway(gateway_env(redis_server, data_dir), base / "gateway.log")
    client = redis.Redis.from_url(redis_server)
    try:
        yield Gateway(url, proc, data_dir, outside, client)
    finally:
        proc.stop()
        client.flushall()
        client.close()


@pytest.fixture
def sync_api(hostile: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile.url, headers={"X-API-Key": API_KEY}, timeout=20) as c:
        yield c


def raw_http(url: str, target: str, *, method: str = "GET", headers: dict[str, str] | None = None,
             body: bytes = b"") -> tuple[int, bytes]:
    """One request with ``target`` sent byte for byte (no client normalizes ``..`` away); status and body."""
    parts = urlsplit(url)
    head = {"Host": parts.netloc, "Connection": "close", "X-API-Key": API_KEY, **(headers or {})}
    if body or method in ("POST", "PUT"):
        head.setdefault("Content-Length", str(len(body)))
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items()), "", ""]
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as s:
        s.sendall("\r\n".join(lines).encode("latin-1") + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# --------------------------------------------------------------------------------------------------
# schemathesis against the OpenAPI schema, every route, with a valid key


@pytest.fixture(scope="module")
def api_schema(hostile: Gateway) -> Any:
    schema = schemathesis.openapi.from_url(f"{hostile.url}/openapi.json")
    schema.config.update(base_url=hostile.url, headers={"X-API-Key": API_KEY}, request_timeout=20)
    schema.config.generation.update(max_examples=FUZZ_EXAMPLES, database="none")
    return schema


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@hypothesis.settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_fuzzed_requests_get_no_5xx_and_answers_match_the_schema(case: Any) -> None:
    response = case.call()
    # The recipe listing is read from the ifcpatch service, which this gateway's settings point at a dead
    # port: a 503 naming it is the right answer there, not a server error.
    if case.path == "/patch/recipes/list" and response.status_code == 503 and "unreachable" in response.text:
        return
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


# --------------------------------------------------------------------------------------------------
# Path traversal in every path field of every operation


def set_at(body: dict[str, Any], loc: tuple[str | int, ...], value: str) -> dict[str, Any]:
    hostile = copy.deepcopy(body)
    target: Any = hostile
    for part in loc[:-1]:
        target = target[part]
    target[loc[-1]] = value
    return hostile


def class_path_fields(model: type[Any]) -> set[str]:
    """Names of every path field a request model declares, nested models included."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        if role_of(field) is not None:
            names.add(name)
        for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
            inner = getattr(arg, "__args__", (arg,))
            for cls in inner:
                if isinstance(cls, type) and hasattr(cls, "model_fields"):
                    names |= class_path_fields(cls)
    return names


def path_locs(op: Operation) -> list[tuple[tuple[str | int, ...], PathRole]]:
    model = REQUEST_MODELS[op].model_validate(VALID_BODIES[op])
    locs = [(loc, role) for loc, role, _owner, _name in path_fields(model)]
    assert {str(loc[-1]) for loc, _ in locs} == class_path_fields(REQUEST_MODELS[op]), op  # every one is probed
    return locs


def traversals(outside: Path) -> list[str]:
    """Refused in every path field, input or output."""
    return [
        "../outside/secret.ifc",
        "../../../../../../etc/passwd",
        "uploads/../../outside/secret.ifc",
        "output/ifcconvert/../../../outside/x.glb",
        "./../outside/x.glb",
        "/etc/passwd",
        "//etc/passwd",
        str(outside / "secret.ifc"),
        str(outside / "dir" / "x.glb"),
        "model.ifc\x00.glb",
        "\x00",
        "..\\..\\outside\\secret.ifc",
        "uploads\\..\\..\\x.glb",
        "escape/x.glb",  # output/<service>/escape is a symlink out
        "dangling.glb",  # output/<service>/dangling.glb points out, at nothing yet
        "",
        ".",
        "a/" * 600 + "x.glb",  # longer than any path may be
        "a" * 1000 + ".glb",  # one name longer than the file system allows
    ]


# Symlinks out of the data dir, or folders: refused as inputs. As outputs they are plain names that
# land inside output/<service>/ (where no such link exists), which is where outputs belong.
INPUT_TRAPS = [
    "out.ifc",  # uploads/out.ifc: a symlink to the secret
    "uploads/out.ifc",
    "out-root.ifc",
    "gone.ifc",  # dangling symlink
    "uploads/outdir/secret.ifc",  # through a symlinked folder
    "uploads/root/etc/passwd",  # through a symlink to /
    "uploads",
    "output",
]
# Percent-encoding means nothing in a JSON string: these are literal names, never decoded to "..".
ENCODED = ["%2e%2e/%2e%2e/outside/x.glb", "..%2f..%2foutside%2fx.glb", "%2E%2E%2F%2E%2E%2Fx.glb"]


async def test_every_path_field_of_every_operation_refuses_traversal_and_enqueues_nothing(
    client, data_dir, tmp_path, sync_redis
):
    outside = tmp_path / "outside"
    plant_hostile_files(data_dir, outside)
    before = outside_snapshot(outside)
    probes = accepted = 0
    for op, spec in PLAIN_SUBMITS.items():
        body = VALID_BODIES[op]
        assert (await client.post(spec.path, json=body)).status_code == 202, op  # the base body is valid
        accepted += 1
        for loc, role in path_locs(op):
            for value in traversals(outside):
                r = await client.post(spec.path, json=set_at(body, loc, value))
                probes += 1
                assert r.status_code == 422, (op, loc, value, r.status_code, r.text)
                assert loc[-1] in r.text and "Traceback" not in r.text, (op, loc, value, r.text)
            for value in INPUT_TRAPS + ENCODED:
                r = await client.post(spec.path, json=set_at(body, loc, value))
                probes += 1
                if role is PathRole.input:
                    assert r.status_code == 422, (op, loc, value, r.text)
                elif r.status_code == 202:  # a literal name inside output/<service>/
                    accepted += 1
                    job = deserialize(sync_redis.get(f"arq:job:{r.json()['job_id']}"))
                    sent: Any = job["k"]["request"]
                    for part in loc:
                        sent = sent[part]
                    assert sent == f"output/{spec.service}/{value}", (op, loc, sent)
                else:
                    assert r.status_code == 422, (op, loc, value, r.text)
    queued = [deserialize(sync_redis.get(k)) for k in sync_redis.keys("arq:job:*")]
    assert len(queued) == sync_redis.zcard(QUEUE) == accepted  # every refused one enqueued nothing
    for job in queued:  # and every path that did reach the queue stays in the data directory
        model = REQUEST_MODELS[Operation(job["f"])].model_validate(job["k"]["request"])
        for _loc, _role, owner, name in path_fields(model):
            real = Path(os.path.realpath(data_dir / getattr(owner, name)))
            assert real.is_relative_to(data_dir.resolve()), real
    assert outside_snapshot(outside) == before
    assert probes > 500


SSRF_TARGETS = [
    "http://127.0.0.1:6379/",
    "http://localhost:8000/jobs",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:22/",
    "http://10.0.0.1/",
    "http://user:pw@example.com/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "ftp://example.com/x",
    "//example.com/x",
    "http://0x7f000001/",
    "http://2130706433/",
]


async def test_no_request_field_makes_the_server_fetch_a_url_off_the_allowlist(client, sync_redis):
    """Every body field that holds a URL refuses hosts not on the allowlist (empty by default): no SSRF."""
    schema = (await client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    probed = 0
    for path, methods in schema["paths"].items():
        for method, spec in methods.items():
            ref = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            props = components.get(ref.get("$ref", "").rpartition("/")[2], {}).get("properties", {})
            url_fields = [n for n, p in props.items() if "url" in n.lower() or p.get("format") == "uri"]
            base = next((VALID_BODIES[op] for op, s in PLAIN_SUBMITS.items() if s.path == path), None)
            if not url_fields or base is None or method != "post":
                continue
            for name in url_fields:
                for target in SSRF_TARGETS:
                    r = await client.post(path, json={**base, name: target})
                    probed += 1
                    assert r.status_code == 422, (path, name, target, r.status_code, r.text)
    assert sync_redis.zcard(QUEUE) == 0 and not sync_redis.keys("arq:job:*")
    # Outbound calls go only to the configured service URLs: no other body field is a URL.
    for name, component in components.items():
        for prop, spec in component.get("properties", {}).items():
            if spec.get("format") == "uri" or prop.lower().endswith("url"):
                # url: what /download-from-url fetches, through the same rules (contracts/fetch_rules.py,
                # tests/test_compat_endpoints.py); download_url, preview_url, confirm_url: links in answers.
                assert prop in ("callback_url", "status_url", "ws_url", "url", "download_url", "preview_url",
                                "confirm_url"), (
                    name, prop)
    print(f"SSRF probes: {probed}")


# --------------------------------------------------------------------------------------------------
# Upload names


def multipart(filename: bytes, content: bytes, boundary: bytes = b"hostileboundary42") -> tuple[bytes, dict[str, str]]:
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--" + boundary + b"--\r\n"
    )
    return body, {"content-type": f"multipart/form-data; boundary={boundary.decode()}"}


HOSTILE_UPLOAD_NAMES = [
    b"../../outside/evil.ifc",
    b"../../../../../../tmp/evil.ifc",
    b"/etc/evil.ifc",
    b"..\\..\\outside\\evil.ifc",
    b"C:\\evil.ifc",
    b"..%2f..%2foutside%2fevil.ifc",
    b"%2e%2e%2fevil.ifc",
    b"evil.ifc\x00.png",
    b"\x00evil.ifc",
    b"..",
    b".",
    b"",
    b".hidden.ifc",
    b".upload-abc.ifc",
    b"uploads/../../evil.ifc",
    b"outdir/evil.ifc",  # the folder symlink pointing out
    b"\xef\xbd\x85vil.ifc",  # full-width letter
    b"e" * 300 + b".ifc",
    b"evil.ifc/",
    b"evil.ifc ",
]


async def test_upload_names_never_leave_uploads_and_symlinks_are_replaced_not_followed(client, data_dir, tmp_path):
    outside = tmp_path / "outside"
    plant_hostile_files(data_dir, outside)
    before = outside_snapshot(outside)
    tmp_before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(data_dir / "uploads")}
    for name in HOSTILE_UPLOAD_NAMES:
        body, headers = multipart(name, b"ISO-10303-21;")
        r = await client.post("/upload/ifc", content=body, headers=headers)
        assert r.status_code in (201, 400, 422), (name, r.status_code, r.text)
        if r.status_code == 201:
            saved = r.json()["filename"]
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", saved) and r.json()["path"] == f"uploads/{saved}"
            assert (data_dir / "uploads" / saved).is_file() and not (data_dir / "uploads" / saved).is_symlink()
    # Uploading over a symlink replaces the link; the file it pointed to is untouched.
    body, headers = multipart(b"out.ifc", b"overwritten")
    r = await client.post("/upload/ifc", content=body, headers=headers)
    assert r.status_code == 201
    assert not (data_dir / "uploads" / "out.ifc").is_symlink()
    assert (data_dir / "uploads" / "out.ifc").read_bytes() == b"overwritten"
    assert outside_snapshot(outside) == before
    assert {p for p in tmp_path.rglob("*") if not p.is_relative_to(data_dir / "uploads")} == tmp_before
    assert not [p for p in (data_dir / "uploads").iterdir() if p.name.startswith(".upload-")]
    # A malformed multipart body is a 4xx, not a crash.
    for garbage in (b"--hostileboundary42\r\nno headers", b"\x00" * 1000, b"--x--", b"--hostileboundary42--\r\n"):
        r = await client.post("/upload/ifc", content=garbage, headers=headers)
        assert 400 <= r.status_code < 500, (garbage[:20], r.status_code, r.text)


# --------------------------------------------------------------------------------------------------
# /files/{path} and the dashboard's assets, with the request target sent byte for byte


def test_download_refuses_every_way_out_of_the_data_dir(hostile: Gateway):
    secret = quote(str(hostile.outside / "secret.ifc"))
    targets = [
        "/files/../outside/secret.ifc",
        "/files/../../../../../../etc/passwd",
        "/files/uploads/../../outside/secret.ifc",
        "/files/%2e%2e/outside/secret.ifc",
        "/files/%2E%2E%2Foutside%2Fsecret.ifc",
        "/files/..%2foutside%2fsecret.ifc",
        "/files/uploads/%2e%2e/%2e%2e/outside/secret.ifc",
        "/files/%252e%252e/outside/secret.ifc",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
        f"/files/{secret}",
        f"/files/%2f{secret.lstrip('/')}",
        "/files/..%5c..%5coutside%5csecret.ifc",
        "/files/uploads/out.ifc",
        "/files/out-root.ifc",
        "/files/gone.ifc",
        "/files/uploads/outdir/secret.ifc",
        "/files/uploads/root/etc/passwd",
        "/files/output/ifcconvert/escape/secret.ifc",
        "/files/uploads/model.ifc%00",
        "/files/%00",
        "/files/uploads/model.ifc%00.txt",
        "/files/uploads",
        "/files/.",
        "/files/..",
        "/dashboard/..%2f..%2fapp.py",
        "/dashboard/%2e%2e",
        "/dashboard/../routers/files.py",
        "/files/" + "a/" * 3000,
    ]
    for target in targets:
        status, body = raw_http(hostile.url, target)
        assert status in (400, 404, 422), (target, status, body[:200])
        assert SECRET.encode() not in body and b"root:" not in body and b"import" not in body, target
    status, body = raw_http(hostile.url, "/files/uploads/model.ifc")
    assert status == 200 and body.startswith(b"ISO-10303-21")
    listed = httpx.get(f"{hostile.url}/files", headers={"X-API-Key": API_KEY}).json()
    paths = {f["path"] for f in listed}
    assert "uploads/model.ifc" in paths
    assert not paths & {"uploads/out.ifc", "out-root.ifc", "gone.ifc"}, paths  # links out are not listed
    assert httpx.get(f"{hostile.url}/files", params={"prefix": "../"}, headers={"X-API-Key": API_KEY}).json() == []


# --------------------------------------------------------------------------------------------------
# Oversized, deeply nested and huge bodies: refused fast, memory flat


def test_oversized_bodies_and_uploads_get_413_and_leave_nothing_behind(
    hostile: Gateway, sync_api: httpx.Client
) -> None:
    before = hostile.jobs_queued()
    big = b'{"input_filename": "model.ifc", "output_filename": "m.glb", "pad": "' + b"a" * 3_000_000 + b'"}'
    started = time.monotonic()
    assert sync_api.post("/ifcconvert", content=big, headers={"content-type": "application/json"}).status_code == 413

    def chunks(total: int, size: int = 65536) -> Iterator[bytes]:  # chunked: no Content-Length to trust
        yield b'{"input_filename": "model.ifc", "output_filename": "m.glb", "pad": "'
        for _ in range(total // size):
            yield b"a" * size

    r = sync_api.post("/ifcconvert", content=chunks(3_000_000), headers={"content-type": "application/json"})
    assert r.status_code == 413
    # A small declared length with a big body is cut at the declared length by the HTTP parser.
    status, _ = raw_http(hostile.url, "/ifcconvert", method="POST",
                         headers={"Content-Type": "application/json", "Content-Length": "999999999"}, body=b"{}")
    assert status == 413
    upload, headers = multipart(b"big.ifc", b"x" * (2 * 1024 * 1024))
    assert sync_api.post("/upload/ifc", content=upload, headers=headers).status_code == 413
    r = sync_api.post("/upload/ifc", content=iter([upload[i:i + 65536] for i in range(0, len(upload), 65536)]),
                 headers=headers)
    assert r.status_code == 413
    fits, headers = multipart(b"fits.ifc", b"x" * (1024 * 1024 - 1))
    assert sync_api.post("/upload/ifc", content=fits, headers=headers).status_code == 201
    assert time.monotonic() - started < 10
    uploads = {p.name for p in (hostile.data_dir / "uploads").iterdir()}
    assert "big.ifc" not in uploads and not [n for n in uploads if n.startswith(".upload-")]
    assert hostile.jobs_queued() == before
    # Headers far beyond any real client's: no 5xx, and the gateway stays up (uvicorn with httptools
    # sets no header size limit; a proxy in front should).
    status, _ = raw_http(hostile.url, "/health", headers={"X-Padding": "a" * 1_000_000})
    assert status < 500
    assert sync_api.get("/health").status_code == 200


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def test_deeply_nested_and_huge_json_is_refused_fast_without_memory_blowup(
    hostile: Gateway, sync_api: httpx.Client
) -> None:
    limit = 1024 * 1024
    bodies = {
        "nested lists": nested(100_000),
        "nested objects": ('{"a":' * 100_000 + "1" + "}" * 100_000).encode(),
        "nested in a field": b'{"input_filename": "model.ifc", "output_filename": "m.glb", "include": '
        + nested(200_000) + b"}",
        "nested unclosed": b"[" * (limit - 10),
        "flat array at the limit": b"[" + b"0," * ((limit - 10) // 2) + b"0]",
        "string at the limit": b'{"input_filename": "' + b"a" * (limit - 100) + b'"}',
        "many keys at the limit": b"{" + b",".join(b'"k%d":0' % i for i in range(80_000)) + b"}",
        "include list too long": json.dumps(
            {"input_filename": "model.ifc", "output_filename": "m.glb", "include": ["IfcWall"] * 80_000}
        ).encode(),
        "objects in a list": json.dumps(
            {"input_filename": "model.ifc", "output_filename": "m.glb", "include": [{"a": [1]}] * 60_000}
        ).encode(),
    }
    for name, body in bodies.items():
        assert len(body) <= limit, name
    before_jobs = hostile.jobs_queued()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], hostile.rss_kib())
            time.sleep(0.005)

    for body in bodies.values():  # warm up: first-use allocations are not growth
        sync_api.post("/ifcconvert", content=body, headers={"content-type": "application/json"})
    rss_before = hostile.rss_kib()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    slowest = 0.0
    try:
        for _ in range(5):
            for name, body in bodies.items():
                started = time.monotonic()
                r = sync_api.post("/ifcconvert", content=body, headers={"content-type": "application/json"})
                slowest = max(slowest, time.monotonic() - started)
                assert r.status_code in (400, 413, 422), (name, r.status_code, r.text[:200])
    finally:
        stop.set()
        sampler.join()
    rss_after = hostile.rss_kib()
    growth_mib, peak_mib = (rss_after - rss_before) / 1024, (peak[0] - rss_before) / 1024
    print(f"gateway RSS {rss_before / 1024:.0f} MiB -> {rss_after / 1024:.0f} MiB after 40 hostile bodies "
          f"(peak +{peak_mib:.0f} MiB), slowest answer {slowest * 1000:.0f} ms")
    assert slowest < 1.0  # 422s do not echo big inputs back (that took 0.7 s of the event loop per MiB)
    assert growth_mib < 32, growth_mib
    assert peak_mib < 200, peak_mib
    assert hostile.jobs_queued() == before_jobs
    assert sync_api.get("/health").status_code == 200


# --------------------------------------------------------------------------------------------------
# Job ids


UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
MALFORMED_IDS = ["bad%20id!", "a" * 200, "%2e%2e", "x%00y", "%C3%BC", "*", "a%0d%0aSet-Cookie:x", "%3Cscript%3E",
                 "id;DROP", "a.b", "%2e"]


def test_unknown_job_ids_are_404_and_malformed_ones_422_everywhere(hostile: Gateway):
    before = hostile.jobs_queued()
    for method, suffix in (("GET", ""), ("GET", "/status"), ("DELETE", ""), ("POST", "/requeue"),
                           ("GET", "/events")):
        status, body = raw_http(hostile.url, f"/jobs/{UNKNOWN_ID}{suffix}", method=method)
        assert status == 404, (method, suffix, status, body)
        for bad in MALFORMED_IDS:
            status, body = raw_http(hostile.url, f"/jobs/{bad}{suffix}", method=method)
            assert status == 422, (method, bad, suffix, status, body)
        for odd in ("..", ".", "a/../b"):  # never reach a job route with a traversal
            status, body = raw_http(hostile.url, f"/jobs/{odd}{suffix}", method=method)
            assert status in (404, 405, 422), (method, odd, suffix, status, body)
    assert hostile.jobs_queued() == before
    ws = hostile.url.replace("http", "ws", 1)
    for job_id, codes in ((UNKNOWN_ID, {4404}), ("bad%20id!", {1008, 4404})):
        try:
            with ws_connect(f"{ws}/jobs/{job_id}/ws", additional_headers={"X-API-Key": API_KEY}, open_timeout=5) as s:
                s.recv(timeout=5)
            raise AssertionError("socket stayed open")
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code in codes, (job_id, exc)
        except InvalidStatus as exc:  # refused at the handshake
            assert exc.response.status_code in (403, 404), exc


# --------------------------------------------------------------------------------------------------
# No client input names the function a worker runs; Redis holds msgpack, never pickle

SMUGGLED = {
    "function": "check_services",
    "f": "check_services",
    "_function": "sweep_workflows",
    "_job_id": "chosen-id",
    "_queue_name": "other-queue",
    "_defer_by": 0,
    "job_try": 99,
    "__class__": "os.system",
    "__reduce__": "os.system",
    "request_id": "smuggled",
}
NOT_ROUTES = ["/check_services", "/sweep_workflows", "/deliver_webhook", "/jobs/abc/check_services",
              "/ifcconvert/check_services", "/ifcconvert%2F..%2Fcheck_services", "/arq:queue", "/IFCCONVERT",
              "/ifcconvert.check_services", "/%63heck_services", "/jobs/check_services/run"]


def redis_values(client: Any) -> Iterator[tuple[str, bytes]]:
    for raw_key in client.scan_iter(count=1000):
        key = raw_key.decode()
        kind = client.type(raw_key).decode()
        if kind == "string":
            yield key, client.get(raw_key)
        elif kind == "hash":
            for v in client.hgetall(raw_key).values():
                yield key, v
        elif kind == "list":
            for v in client.lrange(raw_key, 0, -1):
                yield key, v
        elif kind in ("set", "zset"):
            members = client.smembers(raw_key) if kind == "set" else client.zrange(raw_key, 0, -1)
            for v in members:
                yield key, v


async def test_no_client_input_chooses_the_function_and_redis_holds_no_pickle(
    client, worker, stub, sync_redis, monkeypatch, data_dir
):
    (data_dir / "uploads" / "earlier.json").write_text("[]")  # ifcclash's "previous"
    import arq.jobs
    from arq import ArqRedis

    # Every way a function name can reach arq's job key: enqueue_job, or arq's serialize_job (the
    # gateway writes the job key itself, in one script with its record).
    named: list[str] = []
    enqueue_job = ArqRedis.enqueue_job
    serialize_job = arq.jobs.serialize_job

    async def spy_enqueue(self: ArqRedis, function: str, *args: Any, **kwargs: Any) -> Any:
        named.append(function)
        return await enqueue_job(self, function, *args, **kwargs)

    def spy_serialize(function_name: str, *args: Any, **kwargs: Any) -> bytes:
        named.append(function_name)
        return serialize_job(function_name, *args, **kwargs)

    monkeypatch.setattr(ArqRedis, "enqueue_job", spy_enqueue)
    monkeypatch.setattr(arq.jobs, "serialize_job", spy_serialize)
    for module in [m for name, m in sys.modules.items() if name == "store" or name.startswith("store.")]:
        if getattr(module, "serialize_job", None) is serialize_job:  # imported by name: spied where it is used
            monkeypatch.setattr(module, "serialize_job", spy_serialize)
    stub.will("/ifcconvert", Behaviour(status=400, body={"detail": "bad model"}))  # one fails for good
    stub.will("/ifc2json", Behaviour(status=503), Behaviour(body={"ok": "after a retry"}))
    job_ids: dict[str, Operation] = {}
    for op, spec in PLAIN_SUBMITS.items():
        # Fields no request has are refused, each named, before anything is made.
        r = await client.post(spec.path, json={**VALID_BODIES[op], **SMUGGLED})
        assert r.status_code == 422, (op, r.text)
        assert {e["loc"][-1] for e in r.json()["detail"]} == set(SMUGGLED), (op, r.text)
        r = await client.post(spec.path, json=VALID_BODIES[op],
                              headers={"X-Request-ID": "check_services", "Idempotency-Key": f"../../{op.value}"})
        assert r.status_code == 202, (op, r.text)
        job_ids[r.json()["job_id"]] = op
    for path in NOT_ROUTES:
        r = await client.post(path, json={**VALID_BODIES[Operation.ifcconvert], **SMUGGLED})
        assert r.status_code in (404, 405), (path, r.status_code)
    deferred = (await client.post("/ifcconvert", json={**VALID_BODIES[Operation.ifcconvert], "defer_by": 3600}))
    cancelled = (await client.post("/ifc2json", json={**VALID_BODIES[Operation.ifc2json], "defer_by": 3600}))
    assert (await client.delete(f"/jobs/{cancelled.json()['job_id']}")).status_code == 202
    # Every job above ends first: one still queued would take the slow behaviour scripted next.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        views = [(await client.get(f"/jobs/{j}")).json()["status"] for j in job_ids]
        if all(v in ("complete", "failed") for v in views):
            break
        await asyncio.sleep(0.1)
    stub.will("/calculate-qtos", Behaviour(delay=90))  # outlasts the wait below even on a loaded machine
    slow = (await client.post("/calculate-qtos", json=VALID_BODIES[Operation.calculate_qtos])).json()["job_id"]
    deadline = time.monotonic() + 30
    while (await client.get(f"/jobs/{slow}")).json()["status"] != "in_progress" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert (await client.delete(f"/jobs/{slow}")).json()["status"] == "aborted"
    statuses = {(await client.get(f"/jobs/{j}")).json()["status"] for j in job_ids}
    assert statuses == {"complete", "failed"}, statuses
    assert named and set(named) <= {op.value for op in Operation}, named
    for job_id, op in job_ids.items():  # each route ran its own operation, whatever the body said
        assert deserialize(sync_redis.get(f"arq:result:{job_id}"))["f"] == op.value, (job_id, op)
    assert sync_redis.zcard("other-queue") == 0 and not sync_redis.exists("arq:job:chosen-id")
    for call in stub.calls:  # smuggled fields never reach the service either
        assert not (set(SMUGGLED) - {"request_id"}) & set(call["body"]), call["body"]
    # Every job and result arq wrote is msgpack; nothing anywhere in Redis is a pickle.
    checked = 0
    for key, value in redis_values(sync_redis):
        assert not (value[:1] == b"\x80" and value[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), key
        if key.startswith(("arq:job:", "arq:result:")):
            assert not value.startswith(b"\x80"), key
            decoded = deserialize(value)
            # Operations, or the worker's own cron runs ("cron:*", named in WorkerSettings, never by a client).
            allowed = decoded["f"] in {op.value for op in Operation} or decoded["f"].startswith("cron:")
            assert isinstance(decoded, dict) and allowed, (key, decoded)
            checked += 1
    results = [k for k in sync_redis.keys("arq:result:*")]
    assert len(results) >= len(PLAIN_SUBMITS) + 1 and checked >= len(results) + 1, (checked, results)
    assert deferred.status_code == 202


# --------------------------------------------------------------------------------------------------
# Auth on every route and socket; keys compared in constant time; CORS closed


# Open without a key: liveness, the dashboard's static page and assets (it asks for the key itself),
# and FastAPI's API docs. Everything else, present and future, needs a key.
PUBLIC_ROUTES = {"/health", "/dashboard", "/dashboard/{asset}", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                 "/redoc",
                 # a signed, expiring link (contracts/download_tokens.py) is its own credential
                 "/download/{token}", "/favicon.ico",
                 # the local backend's presigned PUT: its unguessable one-time upload id is the credential
                 "/uploads/presigned/{upload_id}",
                 # the viewer's page and packaged assets; what it shows comes through keyed routes
                 "/viewer", "/viewer/{asset}", "/vendor/{path:path}"}
SAMPLE_PARAMS = {"asset": "app.js", "file_type": "ifc", "path": "uploads/model.ifc"}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: SAMPLE_PARAMS.get(m.group(1), UNKNOWN_ID), path)


def flat_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(full path, route)`` of every route, through included routers (FastAPI >= 0.120 nests them)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flat_routes(inner.routes, prefix + getattr(route.include_context, "prefix", ""))
        else:
            yield prefix + route.path, route


def app_routes() -> list[tuple[str, Any]]:
    from service.app import create_app  # builds the routes only: settings are read by the lifespan

    app = create_app()
    routes = list(flat_routes(app.routes))
    documented = {re.sub(r":\w+\}", "}", path) for path in app.openapi()["paths"]}
    assert documented <= {re.sub(r":\w+\}", "}", path) for path, _ in routes}  # none missed
    return routes


def test_every_route_needs_a_key_except_the_public_ones(hostile: Gateway):
    http_routes = [(path, r) for path, r in app_routes() if isinstance(r, APIRoute) or getattr(r, "methods", None)]
    assert len(http_routes) >= 20
    before = hostile.jobs_queued()
    open_routes = set()
    checked = 0
    for path, route in http_routes:
        for method in sorted(route.methods - {"HEAD"}):
            target = concrete(path)
            body = b"{}" if method in ("POST", "PUT", "PATCH") else b""
            plain = {"Content-Type": "application/json"}
            status, _ = raw_http(hostile.url, target, method=method, headers={**plain, "X-API-Key": ""}, body=body)
            if path in PUBLIC_ROUTES:
                open_routes.add(path)
                assert status != 401, (method, path)
                continue
            checked += 1
            assert status == 401, (method, path, status)
            for wrong in ({"X-API-Key": "wrong"}, {"X-API-Key": API_KEY + "x"}, {"Authorization": "Bearer wrong"},
                          {"X-API-Key": API_KEY[:-1]}, {"Authorization": f"Basic {API_KEY}"}):
                status, _ = raw_http(hostile.url, target, method=method, headers={**plain, "X-API-Key": "", **wrong},
                                     body=body)
                assert status in (401, 403), (method, path, wrong, status)
    assert open_routes == PUBLIC_ROUTES - {"/docs/oauth2-redirect"} or open_routes == PUBLIC_ROUTES
    assert hostile.jobs_queued() == before
    print(f"{checked} route/method pairs refuse a missing or wrong key")


def test_every_websocket_needs_a_key(hostile: Gateway):
    sockets = [path for path, r in app_routes() if isinstance(r, APIWebSocketRoute)]
    assert len(sockets) >= 2, "no WebSocket routes found"
    ws = hostile.url.replace("http", "ws", 1)
    for i, path in enumerate(sockets):
        url = f"{ws}{concrete(path)}"
        cases: list[tuple[dict[str, str], str | None, int]] = [
            ({}, "{}", 4401),  # no key in the first message either
            ({}, '{"api_key": ""}', 4401),
            ({}, '{"api_key": "wrong"}', 4403),
            ({}, "wrong", 4403),
            ({"X-API-Key": "wrong"}, None, 4403),
        ]
        if i == 0:  # says nothing at all: closed after the first-message wait (5 s), no hang
            cases.append(({}, None, 4401))
        for headers, first, code in cases:
            started = time.monotonic()
            try:
                with ws_connect(url, additional_headers=headers, open_timeout=5) as s:
                    if first is not None:
                        s.send(first)
                    s.recv(timeout=10)
                raise AssertionError(f"{path} sent data without a key")
            except ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code == code, (path, headers, first, exc)
            assert time.monotonic() - started < 8
        with ws_connect(f"{url}?api_key=wrong", open_timeout=5) as s:
            with pytest.raises(ConnectionClosed) as closed:
                s.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch):
    import hashlib
    import hmac

    from service import deps
    from settings import Settings

    settings = Settings(api_keys="first,team-a:read:second,third", _env_file=None)
    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    held = [hashlib.sha256(key).digest() for key in (b"first", b"second", b"third")]  # at rest: digests only
    for presented in ("first", "third", "nope", ""):
        compared.clear()
        deps.key_matches(presented, settings)
        assert compared == held, presented  # no early exit on a match


def test_cors_is_closed_by_default(hostile: Gateway):
    evil = {"Origin": "https://evil.example"}
    preflight = {**evil, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    get_preflight = {**preflight, "Access-Control-Request-Method": "GET"}
    answers = [
        httpx.options(f"{hostile.url}/ifcconvert", headers=preflight),
        httpx.options(f"{hostile.url}/jobs/{UNKNOWN_ID}", headers=get_preflight),
        httpx.get(f"{hostile.url}/health", headers=evil),
        httpx.get(f"{hostile.url}/jobs", headers={**evil, "X-API-Key": API_KEY}),
        httpx.post(f"{hostile.url}/ifcconvert", headers={**evil, "X-API-Key": API_KEY}, json={}),
    ]
    for r in answers:
        lowered = {k.lower() for k in r.headers}
        assert not {h for h in lowered if h.startswith("access-control-")}, (r.request.url, r.headers)
    assert answers[0].status_code in (401, 404, 405)


# --------------------------------------------------------------------------------------------------
# Keys and passwords never reach the logs


def start_redis_with_password(port: int, workdir: Path, password: str) -> Any:
    import shutil
    import subprocess

    binary = shutil.which("redis-server")
    assert binary, "redis-server not found on PATH"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir),
         "--requirepass", password],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=password)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_for(pings, what="redis-server with a password")
    client.close()
    return proc


async def test_keys_and_passwords_never_reach_the_logs(tmp_path: Path, stub: StubService):
    password, key = f"redis-pw-{secrets.token_hex(8)}", f"api-key-{secrets.token_hex(8)}"
    port = free_port()
    (tmp_path / "redis").mkdir()
    server = start_redis_with_password(port, tmp_path / "redis", password)
    data_dir = tmp_path / "data"
    plant_hostile_files(data_dir, tmp_path / "outside")
    env = gateway_env(f"redis://:{password}@127.0.0.1:{port}/0", data_dir, IFCFLOW_API_KEYS=key,
                      IFCFLOW_POLL_DELAY="0.05", IFCFLOW_HEARTBEAT_INTERVAL="1", IFCFLOW_RETRY_BACKOFF="0.1",
                      IFCFLOW_RETRY_BACKOFF_MAX="0.5", IFCFLOW_LOG_LEVEL="DEBUG",
                      **{f"IFCFLOW_{s.upper()}_URL": stub.url for s in SERVICES})
    authed = redis.Redis(port=port, password=password)
    url, gateway = start_gateway(env, tmp_path / "gateway.log")
    worker = start_worker(env, tmp_path / "worker.log", authed)
    ws = url.replace("http", "ws", 1)
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=20) as api:

            async def run_one() -> str:
                job_id = str((await api.post("/ifcconvert", json=VALID_BODIES[Operation.ifcconvert])).json()["job_id"])
                for _ in range(300):
                    if (await api.get(f"/jobs/{job_id}")).json()["status"] == "complete":
                        return job_id
                    await asyncio.sleep(0.05)
                raise AssertionError("job did not complete")

            job_id = await run_one()
            assert (await api.get("/metrics", headers={"X-API-Key": "", "Authorization": f"Bearer {key}"})).is_success
            await api.get(f"/jobs?api_key={key}")
            await api.get("/jobs", headers={"X-API-Key": key + "-wrong"})
            with ws_connect(f"{ws}/jobs/{job_id}/ws?api_key={key}", open_timeout=5) as s:
                assert json.loads(s.recv(timeout=5))["status"] == "complete"
            with ws_connect(f"{ws}/ws/jobs", open_timeout=5) as s:
                s.send(json.dumps({"api_key": key}))
            # A Redis outage makes both sides log connection errors: none may carry the password.
            server.terminate()
            server.wait(10)
            assert (await api.post("/ifcconvert", json=VALID_BODIES[Operation.ifcconvert])).status_code == 503
            await asyncio.sleep(2.5)
            server = start_redis_with_password(port, tmp_path / "redis", password)
            await run_one()
    finally:
        worker.stop()
        gateway.stop()
        server.terminate()
        server.wait(10)
        authed.close()
    for log in (tmp_path / "gateway.log", tmp_path / "worker.log"):
        text = log.read_text()
        # The logs were written at all (the gateway says each submit's job id on its http.request line).
        assert ("job." in text or "http.request" in text) and len(text.splitlines()) > 10, log
        for secret in (key, password, quote(key), quote(password)):
            assert secret not in text, (log.name, [line for line in text.splitlines() if secret in line][:3])
    assert "api_key=***" in (tmp_path / "gateway.log").read_text()  # the socket's query was logged, redacted
