"""ifcpipeline's file endpoints as the n8n node (n8n-nodes-ifcpipeline 0.6.0) calls them, against the
session's gateway: the dropdowns' listing, download links, converted JSON by name, and the URL checks
of /download-from-url at submit. The ifcpatch endpoints and the downloads themselves, which need the
real ifcpatch service, are in test_compat_endpoints_live.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from contracts.download_tokens import mint
from tests.conftest import API_KEY

pytestmark = pytest.mark.asyncio

QUEUE = "arq:queue"


def _write(data_dir: Path, relative: str, text: str) -> Path:
    path = data_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def node_files(listing: dict[str, list[str]], extensions: list[str] | None = None) -> list[str]:
    """The values of the node's file dropdowns (GenericFunctions.getFiles): the listing, by extension."""
    files = listing["files"]
    return [f for f in files if not extensions or any(f.lower().endswith(e) for e in extensions)]


async def test_list_directories_gives_the_dropdowns_every_file_with_a_leading_slash(api, data_dir):
    _write(data_dir, "output/ifc2json/model.json", "{}")
    _write(data_dir, "output/ifccsv/csv/report.csv", "a,b\n")
    _write(data_dir, "uploads/.upload-partial", "half a file")
    _write(data_dir, "output/ifcconvert/.staging-x/model.glb", "being written")
    r = await api.get("/list_directories")
    assert r.status_code == 200, r.text
    listing = r.json()
    assert set(listing) == {"files"}
    assert listing["files"] == sorted(listing["files"])
    assert set(listing["files"]) == {
        "/uploads/model.ifc", "/uploads/rules.ids", "/output/ifc2json/model.json", "/output/ifccsv/csv/report.csv",
    }
    assert node_files(listing, [".ifc"]) == ["/uploads/model.ifc"]
    assert (await api.get("/list_directories", headers={"X-API-Key": ""})).status_code == 401


async def test_download_link_serves_the_file_without_the_api_key(api, gateway, data_dir):
    _write(data_dir, "output/ifc2json/model.json", '{"entities": []}')
    # The node's "Download File": create a link for a dropdown value, then GET /download/<token>.
    r = await api.post("/create_download_link", json={"file_path": "/output/ifc2json/model.json"})
    assert r.status_code == 200, r.text
    link = r.json()
    assert link["token"] == link["download_token"] and link["file_path"] == "/output/ifc2json/model.json"
    assert link["download_url"] == f"{gateway}/download/{link['token']}"
    expiry = link["expiry"].replace("Z", "+00:00")
    from datetime import datetime

    remaining = datetime.fromisoformat(expiry).timestamp() - time.time()
    assert 1700 < remaining <= 1800, remaining  # IFCFLOW_DOWNLOAD_LINK_TTL's default: ifcpipeline's 30 minutes
    async with httpx.AsyncClient(timeout=10) as anonymous:
        got = await anonymous.get(link["download_url"])
        assert got.status_code == 200 and got.content == b'{"entities": []}'
        assert "model.json" in got.headers["content-disposition"]
        # Any change to the token (the path or expiry it carries, or its signature) breaks it.
        payload, _, signature = link["token"].partition(".")
        forged = payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature
        for token in (forged, payload + "." + signature[::-1], "not-a-token", payload):
            r = await anonymous.get(f"{gateway}/download/{token}")
            assert r.status_code == 403, (token, r.status_code, r.text)
            assert "invalid download token" in r.json()["detail"]


async def test_download_link_accepts_every_path_form_and_refuses_outside_the_data_directory(api, data_dir, tmp_path):
    for form in ("model.ifc", "uploads/model.ifc", "/uploads/model.ifc", "/app/uploads/model.ifc"):
        r = await api.post("/create_download_link", json={"file_path": form})
        assert r.status_code == 200 and r.json()["file_path"] == "/uploads/model.ifc", (form, r.text)
    # The node's "Create Viewer Link": the same call, read for its preview_url.
    assert r.json()["preview_url"].endswith("/viewer?ifc=uploads/model.ifc")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (data_dir / "uploads" / "link.ifc").symlink_to(outside)
    for path, status in [("/etc/passwd", 422), ("../../etc/passwd", 422), ("uploads/../../x", 422),
                         (str(outside), 422), ("/uploads/link.ifc", 404), ("/uploads/missing.ifc", 404)]:
        r = await api.post("/create_download_link", json={"file_path": path})
        assert r.status_code == status, (path, r.status_code, r.text)
        assert "Traceback" not in r.text and "secret" not in r.text
    r = await api.post("/create_download_link", json={"file_path": "model.ifc", "expires": 99999})
    assert r.status_code == 422 and "expires" in r.text  # a field ifcpipeline does not know


@pytest.fixture
def known_secret(env):
    env["IFCFLOW_DOWNLOAD_SECRET"] = "a-test-secret"
    env["IFCFLOW_DOWNLOAD_LINK_TTL"] = "120"
    return b"a-test-secret"


async def test_download_tokens_expire_and_only_the_configured_secret_signs_them(known_secret, client):
    r = await client.post("/create_download_link", json={"file_path": "/uploads/model.ifc"})
    assert r.status_code == 200, r.text
    link = r.json()
    from datetime import datetime

    remaining = datetime.fromisoformat(link["expiry"].replace("Z", "+00:00")).timestamp() - time.time()
    assert 100 < remaining <= 120, remaining  # IFCFLOW_DOWNLOAD_LINK_TTL
    anonymous = {"X-API-Key": ""}
    assert (await client.get(f"/download/{link['token']}", headers=anonymous)).status_code == 200
    expired, _ = mint(known_secret, "uploads/model.ifc", 60, now=time.time() - 61)
    r = await client.get(f"/download/{expired}", headers=anonymous)
    assert r.status_code == 410 and "expired" in r.json()["detail"]
    other, _ = mint(b"another-secret", "uploads/model.ifc", 60)
    assert (await client.get(f"/download/{other}", headers=anonymous)).status_code == 403
    # A genuine token names only what was checked: a file removed since is gone, not served from elsewhere.
    token, _ = mint(known_secret, "uploads/../../etc/passwd", 60)
    assert (await client.get(f"/download/{token}", headers=anonymous)).status_code == 404


async def test_get_ifc2json_serves_a_converted_json_by_name_or_dropdown_path(api, data_dir):
    _write(data_dir, "output/ifc2json/model.json", json.dumps({"schema": "IFC4", "entities": [1]}))
    # ifcpipeline's own layout of RQ-era outputs written through ifcflow: output/json/ in a request.
    _write(data_dir, "output/ifc2json/json/other.json", json.dumps({"schema": "IFC2X3"}))
    # The node's "Get JSON" puts the dropdown value after /ifc2json/: a double slash.
    for path in ("/ifc2json/model.json", "/ifc2json//output/ifc2json/model.json", "/ifc2json//output/json/model.json"):
        r = await api.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.json() == {"schema": "IFC4", "entities": [1]}
    assert (await api.get("/ifc2json/other.json")).json() == {"schema": "IFC2X3"}
    assert (await api.get("/ifc2json//output/json/other.json")).json() == {"schema": "IFC2X3"}
    for path, status in [("/ifc2json/missing.json", 404), ("/ifc2json//uploads/model.ifc", 404),
                         ("/ifc2json//etc/passwd", 422), ("/ifc2json/..%2F..%2Fetc%2Fpasswd", 422)]:
        r = await api.get(path)
        assert r.status_code == status, (path, r.status_code, r.text)


SSRF_URLS = [
    "http://127.0.0.1:6379/model.ifc",
    "http://localhost:8000/jobs",
    "http://[::1]:22/model.ifc",
    "http://[::ffff:127.0.0.1]/model.ifc",
    "http://10.0.0.1/model.ifc",
    "http://172.16.5.4/model.ifc",
    "http://192.168.1.10/model.ifc",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/model.ifc",
    "http://2130706433/model.ifc",
    "http://0x7f000001/model.ifc",
    "http://user:pw@example.com/model.ifc",
    "file:///etc/passwd",
    "ftp://example.com/model.ifc",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "//example.com/model.ifc",
    "model.ifc",
    "http://no-such-host.invalid/model.ifc",
]


async def test_download_from_url_refuses_every_private_or_malformed_url_at_submit(api, sync_redis):
    for url in SSRF_URLS:
        r = await api.post("/download-from-url", json={"url": url})
        assert r.status_code == 422, (url, r.status_code, r.text)
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "url"], (url, error)
        assert "Traceback" not in r.text
    for name in ("../model.ifc", ".hidden.ifc", "a/b.ifc", "x;rm -rf.ifc", ""):
        r = await api.post("/download-from-url", json={"url": "http://127.0.0.1/x.ifc", "output_filename": name})
        assert r.status_code == 422 and "output_filename" in r.text, (name, r.text)
    r = await api.post("/download-from-url", json={"url": "https://example.com/a.ifc", "use_world_cords": True})
    assert r.status_code == 422 and "use_world_cords" in r.text
    assert sync_redis.zcard(QUEUE) == 0 and not sync_redis.keys("arq:job:*")


async def test_the_compat_endpoints_need_the_api_key_but_download_links_do_not(gateway):
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as anonymous:
        for method, path in [("GET", "/list_directories"), ("POST", "/create_download_link"),
                             ("POST", "/download-from-url"), ("GET", "/ifc2json/model.json"),
                             ("POST", "/patch/recipes/list"), ("POST", "/patch/execute")]:
            r = await anonymous.request(method, path, json={})
            assert r.status_code == 401, (path, r.status_code)
            r = await anonymous.request(method, path, json={}, headers={"X-API-Key": API_KEY + "x"})
            assert r.status_code == 403, (path, r.status_code)
        assert (await anonymous.get("/download/x.y")).status_code == 403  # a token, not a key, opens it
