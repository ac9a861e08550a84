"""Webhooks (signed, retried, allowlisted) and result caching, with real gateway, worker and Redis."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from contracts.webhooks import SIGNATURE_HEADER, verify
from tests.conftest import CONVERT, Behaviour, eventually, serve

SECRET = "webhook-secret-for-tests"


class Receiver:
    """A webhook receiver that fails its first ``failures`` deliveries with 500."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts = 0
        self.delivered: list[dict] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        assert verify(SECRET.encode(), body, request.headers[SIGNATURE_HEADER]), "bad signature"
        if self.attempts <= self.failures:
            return web.Response(status=500)
        self.delivered.append({"headers": dict(request.headers), "body": json.loads(body)})
        return web.Response(status=204)


@pytest.fixture
async def receiver():
    r = Receiver(failures=2)
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    async with serve(app) as url:
        r.url = f"{url}/hook"
        yield r


@pytest.fixture
def webhook_env(env, receiver):
    env["IFCFLOW_WEBHOOK_SECRET"] = SECRET
    env["IFCFLOW_CALLBACK_ALLOWED_HOSTS"] = f"127.0.0.1:{receiver.url.split(':')[2].split('/')[0]}"


@pytest.fixture
def api(webhook_env, api):
    return api


async def test_a_signed_webhook_arrives_once_after_two_failed_deliveries(api, worker, stub, receiver):
    stub.will("/ifcconvert", Behaviour(body={"output_files": ["output/ifcconvert/model.glb"]}))
    r = await api.post("/ifcconvert", json={**CONVERT, "callback_url": receiver.url})
    job_id = r.json()["job_id"]
    await eventually(lambda: receiver.delivered)
    # Nothing more comes for it: a second job's webhook, sent after, arrives alone.
    later = (await api.post("/ifcconvert", json={**CONVERT, "callback_url": receiver.url})).json()["job_id"]
    await eventually(lambda: len(receiver.delivered) > 1)
    assert [d["body"]["data"]["job_id"] for d in receiver.delivered] == [job_id, later]
    assert receiver.attempts == 4
    delivery = receiver.delivered[0]
    assert delivery["body"]["event"] == "job.complete"
    assert delivery["body"]["data"]["job_id"] == job_id
    assert delivery["body"]["data"]["result"] == {"output_files": ["output/ifcconvert/model.glb"]}
    # The job itself was never held up by the failing receiver.
    view = (await api.get(f"/jobs/{job_id}")).json()
    assert view["status"] == "complete"


async def test_a_workflow_callback_reports_the_whole_graph(api, worker, stub, receiver):
    receiver.failures = 0
    steps = [{"id": "only", "operation": "ifcconvert", "arguments": CONVERT}]
    r = await api.post("/workflows", json={"steps": steps, "callback_url": receiver.url})
    assert r.status_code == 202, r.text
    await eventually(lambda: receiver.delivered)
    body = receiver.delivered[0]["body"]
    assert body["event"] == "workflow.complete"
    assert body["data"]["workflow_id"] == r.json()["workflow_id"]


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.5/hook", "http://169.254.169.254/latest/meta-data", "file:///etc/passwd",
     "http://user:pw@127.0.0.1/hook", "gopher://127.0.0.1/"],
)
async def test_callback_hosts_off_the_allowlist_are_refused(api, stub, url):
    r = await api.post("/ifcconvert", json={**CONVERT, "callback_url": url})
    assert r.status_code == 422 and "callback_url" in r.text
    assert stub.calls == []


async def test_the_same_operation_on_the_same_bytes_is_served_from_the_cache(api, worker, stub, data_dir):
    out = data_dir / "output" / "ifcconvert"
    out.mkdir(parents=True, exist_ok=True)  # the gateway makes it at start
    (out / "first.glb").write_bytes(b"glTF-bytes")
    stub.will("/ifcconvert", Behaviour(body={"output_files": ["output/ifcconvert/first.glb"], "size_bytes": 10}))
    (data_dir / "uploads" / "copy.ifc").write_bytes((data_dir / "uploads" / "model.ifc").read_bytes())

    async def run(body):
        job_id = (await api.post("/ifcconvert", json={**body, "cache": True})).json()["job_id"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            view = (await api.get(f"/jobs/{job_id}")).json()
            if view["status"] in ("complete", "failed"):
                return view
            await asyncio.sleep(0.05)
        raise AssertionError(view)

    first = await run({"input_filename": "model.ifc", "output_filename": "first.glb"})
    assert first["status"] == "complete" and "cached" not in first["result"]
    # Another name, same bytes, another output name: no service call, the output file is there.
    second = await run({"input_filename": "copy.ifc", "output_filename": "second.glb"})
    assert second["status"] == "complete"
    assert second["result"] == {"output_files": ["output/ifcconvert/second.glb"], "size_bytes": 10, "cached": True}
    assert (out / "second.glb").read_bytes() == b"glTF-bytes"
    assert len(stub.calls_to("/ifcconvert")) == 1
    # Other options: a miss.
    (out / "first.glb").write_bytes(b"glTF-bytes")
    third = await run({"input_filename": "copy.ifc", "output_filename": "third.glb", "use_world_coords": True})
    assert "cached" not in third["result"]
    assert len(stub.calls_to("/ifcconvert")) == 2


@pytest.mark.parametrize("url", ["http://x.example.com:99999/", "http://x.example.com:-1/", "http://[*.example.com]/"])
def test_a_callback_url_that_is_no_valid_url_is_refused_not_an_error(url: str) -> None:
    from contracts.webhooks import CallbackRefused, check_callback_url

    with pytest.raises(CallbackRefused, match="callback_url"):
        check_callback_url(url, ["*.example.com"])
