"""Live status over WebSocket and SSE: real Redis notifications, real uvicorn, real worker, real sockets."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx
import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import (
    API_KEY,
    CONVERT,
    Behaviour,
    Process,
    free_port,
    start_redis,
    start_worker,
    submit,
    wait_for,
)

PROGRESS_STREAM = [
    {"event": "progress", "percent": 30, "phase": "parsing"},
    {"event": "progress", "percent": 70, "phase": "tessellating"},
    {"event": "result", "result": {"output_files": ["output/ifcconvert/model.glb"]}},
]


def ws_url(http_url: str, path: str) -> str:
    return "ws" + http_url.removeprefix("http") + path


# How ifcflow starts the gateway (cli/plan.py, compose, Kubernetes, the image): stock uvicorn, its own
# WebSocket protocol, without per-message deflate.
PRODUCTION = ["--ws-per-message-deflate", "false"]


def keyspace_subscriptions(client):
    """The keyspace channels the gateway is subscribed to, and how many patterns."""
    channels = [c.decode() for c in client.pubsub_channels("__keyspace@0__:*")]
    return sorted(channels), client.pubsub_numpat()


async def until_subscribed(client, channels=None, patterns=0, timeout=10.0):
    """Wait (with a deadline) until Redis has exactly these keyspace subscriptions."""
    wanted = (sorted(channels or []), patterns)
    deadline = time.monotonic() + timeout
    while (got := keyspace_subscriptions(client)) != wanted:
        assert time.monotonic() < deadline, f"subscriptions {got}, not {wanted}"
        await asyncio.sleep(0.02)


def channel_of(job_id):
    return f"__keyspace@0__:ifcflow:job:{job_id}"


@pytest.fixture
def gateway(env, tmp_path):
    """This module's gateway: the production command (conftest's is uvicorn with its defaults)."""
    proc = _start_gateway(env, tmp_path, *PRODUCTION)
    try:
        yield proc.url
    finally:
        proc.stop()


async def collect(socket, timeout=20.0):
    """Every message until the server closes the socket."""
    messages = []
    try:
        async with asyncio.timeout(timeout):
            async for raw in socket:
                messages.append(json.loads(raw))
    except ConnectionClosed:
        pass
    return messages


async def test_a_real_job_streams_queued_in_progress_progress_complete_in_order(
    api, gateway, env, tmp_path, sync_redis, stub
):
    stub.will("/ifcconvert", Behaviour(delay=0.3, stream=PROGRESS_STREAM))
    job_id = await submit(api)
    async with websockets.connect(ws_url(gateway, f"/jobs/{job_id}/ws"),
                                  additional_headers={"X-API-Key": API_KEY}) as socket:
        first = json.loads(await socket.recv())
        assert first["event"] == "snapshot" and first["status"] == "queued"
        worker = start_worker(env, tmp_path / "worker.log", sync_redis)  # only now may the job start
        try:
            messages = [first, *await collect(socket)]
        finally:
            worker.stop()
        assert socket.close_code == 1000
    events = [m["event"] for m in messages]
    assert events[0] == "snapshot" and events[-1] == "complete"
    assert "in_progress" in events
    progress = [m["progress"]["percent"] for m in messages if m["event"] == "progress"]
    assert progress == [30, 70]
    assert events.index("in_progress") < events.index("progress") < events.index("complete")
    assert messages[-1]["result"] == {"output_files": ["output/ifcconvert/model.glb"]}
    assert messages[-1] == {**(await api.get(f"/jobs/{job_id}")).json(), "event": "complete"}


async def test_under_uvicorns_defaults_with_per_message_deflate_the_sequence_is_the_same(
    env, tmp_path, sync_redis, stub
):
    stub.will("/ifcconvert", Behaviour(delay=0.3, stream=PROGRESS_STREAM))
    gateway = _start_gateway(env, tmp_path)  # uvicorn with its defaults, as conftest starts it
    worker = start_worker(env, tmp_path / "worker.log", sync_redis)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers={"X-API-Key": API_KEY}, timeout=10) as api:
            job_id = await submit(api)
            async with websockets.connect(ws_url(gateway.url, f"/jobs/{job_id}/ws?api_key={API_KEY}")) as socket:
                messages = await collect(socket)
                assert socket.close_code == 1000
    finally:
        worker.stop()
        gateway.stop()
    events = [m["event"] for m in messages]
    assert events[0] == "snapshot" and events[-1] == "complete"
    assert [m["progress"]["percent"] for m in messages if m["event"] == "progress"] == [30, 70]


async def test_redis_sends_this_gateway_notifications_only_for_what_is_followed(api, gateway, sync_redis):
    """Nobody watching: no subscription at all (a submit costs the gateway no notification); a job's
    follower: that job's record's one keyspace channel; the all-jobs stream: one pattern, while it is open."""
    job_id = await submit(api)
    assert keyspace_subscriptions(sync_redis) == ([], 0)
    async with websockets.connect(ws_url(gateway, f"/jobs/{job_id}/ws?api_key={API_KEY}")) as socket:
        await socket.recv()  # the snapshot is read only once the subscription is confirmed
        assert keyspace_subscriptions(sync_redis) == ([channel_of(job_id)], 0)
        async with websockets.connect(ws_url(gateway, f"/ws/jobs?api_key={API_KEY}")):
            await until_subscribed(sync_redis, [channel_of(job_id)], patterns=1)
    await until_subscribed(sync_redis)


async def test_every_change_of_a_record_reaches_every_one_of_many_sockets(api, gateway, sync_redis):
    """No worker: the test moves the job itself, writing its record as the job store does."""
    job_id = await submit(api)
    url = ws_url(gateway, f"/jobs/{job_id}/ws?api_key={API_KEY}")
    sockets = [await websockets.connect(url, compression=None) for _ in range(50)]
    try:
        for socket in sockets:
            assert json.loads(await asyncio.wait_for(socket.recv(), 10))["event"] == "snapshot"
        record, now = f"ifcflow:job:{job_id}", int(time.time() * 1000)
        changes = [
            ({"status": "in_progress", "started_at": now}, ("in_progress", None)),
            ({"progress": json.dumps({"percent": 20, "phase": "parsing"})}, ("progress", 20)),
            ({"progress": json.dumps({"percent": 60, "phase": "writing"})}, ("progress", 60)),
        ]
        for fields, expected in changes:
            sync_redis.hset(record, mapping=fields)
            got = [json.loads(await asyncio.wait_for(s.recv(), 10)) for s in sockets]
            assert {(m["event"], (m["progress"] or {}).get("percent")) for m in got} == {expected}
        sync_redis.hset(record, mapping={"status": "complete", "finished_at": now + 1,
                                         "result": json.dumps({"output_files": ["out.glb"]})})
        ends = [await collect(s, timeout=10) for s in sockets]
        assert all([m["event"] for m in end] == ["complete"] for end in ends)
        assert {s.close_code for s in sockets} == {1000}
    finally:
        for socket in sockets:
            await socket.close()


async def test_failed_and_retrying_events_carry_their_reason(api, gateway, worker, stub):
    busy = Behaviour(status=503, body={"error": {"type": "busy", "message": "busy now"}}, delay=0.3)
    stub.will("/ifc2json", busy, Behaviour(status=422, body={"error": {"type": "x", "message": "not IFC"}}, delay=0.3))
    job_id = await submit(api, "/ifc2json", {"filename": "model.ifc", "output_filename": "m.json"})
    async with websockets.connect(ws_url(gateway, f"/jobs/{job_id}/ws?api_key={API_KEY}")) as socket:
        messages = await collect(socket)
    by_event = {m["event"]: m for m in messages}
    assert "retrying" in by_event, [m["event"] for m in messages]
    assert by_event["retrying"]["retry"]["attempt"] == 1
    assert "busy now" in by_event["retrying"]["retry"]["reason"]
    assert messages[-1]["event"] == "failed"
    assert messages[-1]["error"]["message"] == "not IFC"


async def test_an_aborted_job_ends_its_stream_with_aborted(api, gateway, worker, stub):
    stub.will("/ifcconvert", Behaviour(delay=30))
    job_id = await submit(api)
    async with websockets.connect(ws_url(gateway, f"/jobs/{job_id}/ws")) as socket:
        await socket.send(json.dumps({"api_key": API_KEY}))  # browsers: the key as the first message
        snapshot = json.loads(await socket.recv())
        assert snapshot["event"] == "snapshot"
        deadline = time.monotonic() + 10
        while (await api.get(f"/jobs/{job_id}")).json()["status"] != "in_progress" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await api.delete(f"/jobs/{job_id}")
        messages = await collect(socket)
    assert messages[-1]["event"] == "aborted"


async def test_a_finished_job_gets_its_snapshot_and_a_clean_close(api, gateway, worker, stub):
    job_id = await submit(api)
    wait_until = time.monotonic() + 10
    while (await api.get(f"/jobs/{job_id}")).json()["status"] != "complete" and time.monotonic() < wait_until:
        await asyncio.sleep(0.05)
    async with websockets.connect(ws_url(gateway, f"/jobs/{job_id}/ws"),
                                  additional_headers={"X-API-Key": API_KEY}) as socket:
        messages = await collect(socket)
        assert socket.close_code == 1000
    assert [m["event"] for m in messages] == ["snapshot"]
    assert messages[0]["status"] == "complete"


async def test_all_jobs_stream_honours_operation_and_status_filters(api, gateway, worker, stub, sync_redis):
    url = ws_url(gateway, "/ws/jobs?operation=ifc2json&status=complete")
    async with websockets.connect(url, additional_headers={"X-API-Key": API_KEY}) as socket:
        await until_subscribed(sync_redis, patterns=1)
        await submit(api)  # a convert job: filtered out
        wanted = await submit(api, "/ifc2json", {"filename": "model.ifc", "output_filename": "m.json"})
        got = json.loads(await asyncio.wait_for(socket.recv(), 15))
        assert got["job_id"] == wanted and got["event"] == "complete" and got["operation"] == "ifc2json"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.recv(), 1.0)


@pytest.mark.parametrize(
    "how,code",
    [("header-wrong", 4403), ("query-wrong", 4403), ("first-message-wrong", 4403), ("first-message-empty", 4401)],
)
async def test_sockets_without_a_valid_key_are_closed_with_4401_or_4403(api, gateway, how, code):
    job_id = await submit(api)
    path = f"/jobs/{job_id}/ws"
    headers = {"X-API-Key": "wrong"} if how == "header-wrong" else {}
    if how == "query-wrong":
        path += "?api_key=wrong"
    async with websockets.connect(ws_url(gateway, path), additional_headers=headers) as socket:
        if how == "first-message-wrong":
            await socket.send(json.dumps({"api_key": "wrong"}))
        if how == "first-message-empty":
            await socket.send(json.dumps({}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 10)
        assert socket.close_code == code


async def test_unknown_job_socket_closes_with_4404(gateway):
    async with websockets.connect(ws_url(gateway, "/jobs/nope/ws"), additional_headers={"X-API-Key": API_KEY}) as s:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(s.recv(), 10)
        assert s.close_code == 4404


async def test_server_sent_events_give_the_same_sequence(api, gateway, worker, stub):
    stub.will("/ifcconvert", Behaviour(delay=0.3, stream=PROGRESS_STREAM))
    job_id = await submit(api)
    events = []
    async with api.stream("GET", f"/jobs/{job_id}/events", timeout=20) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[0]["event"] == "snapshot"
    assert events[-1]["event"] == "complete"
    assert [e["progress"]["percent"] for e in events if e["event"] == "progress"] == [30, 70]
    assert (await api.get("/jobs/unknown/events")).status_code == 404


@pytest.fixture
def own_redis(tmp_path, env):
    """A Redis for this test alone, so it can refuse CONFIG or be restarted."""
    servers = {}

    def start(*extra):
        port = servers.setdefault("port", free_port())
        servers["proc"] = start_redis(port, tmp_path, "--appendonly", "yes", *extra)
        env["IFCFLOW_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        return redis.Redis(port=port)

    yield start, servers
    if servers.get("proc") and servers["proc"].poll() is None:
        servers["proc"].terminate()
        servers["proc"].wait(10)


async def test_without_config_rights_the_gateway_polls_and_clients_still_see_every_state(
    own_redis, env, tmp_path, stub
):
    start, _ = own_redis
    client = start("--rename-command", "CONFIG", "")
    gateway = _start_gateway(env, tmp_path, *PRODUCTION)
    worker = start_worker(env, tmp_path / "worker.log", client)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers={"X-API-Key": API_KEY}, timeout=10) as api:
            assert (await api.get("/health")).json()["live_status"] == "polling"
            stub.will("/ifcconvert", Behaviour(delay=0.8, stream=PROGRESS_STREAM))
            job_id = await submit(api)
            async with websockets.connect(ws_url(gateway.url, f"/jobs/{job_id}/ws?api_key={API_KEY}")) as socket:
                messages = await collect(socket)
        events = [m["event"] for m in messages]
        assert events[-1] == "complete"
        assert [m["progress"]["percent"] for m in messages if m["event"] == "progress"] == [30, 70]
        assert any(line.get("event") == "live.notifications_unavailable" for line in gateway.log_lines())
    finally:
        worker.stop()
        gateway.stop()


async def test_a_redis_restart_mid_stream_is_survived_and_later_changes_still_arrive(own_redis, env, tmp_path):
    start, servers = own_redis
    start()
    gateway = _start_gateway(env, tmp_path, *PRODUCTION)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers={"X-API-Key": API_KEY}, timeout=10) as api:
            job_id = await submit(api, body={**CONVERT, "defer_by": 3600})
            async with websockets.connect(ws_url(gateway.url, f"/jobs/{job_id}/ws?api_key={API_KEY}")) as socket:
                assert json.loads(await socket.recv())["status"] == "deferred"
                servers["proc"].terminate()
                servers["proc"].wait(10)
                restarted = start()  # same port, same AOF: the deferred job is still there
                await until_subscribed(restarted, [channel_of(job_id)], timeout=15)  # the gateway is back
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    r = await api.delete(f"/jobs/{job_id}")
                    if r.status_code == 202:
                        break
                    await asyncio.sleep(0.2)
                messages = await collect(socket)
        assert messages[-1]["event"] == "aborted", messages
        assert any(line.get("event") == "live.pubsub_lost" for line in gateway.log_lines())
    finally:
        gateway.stop()


def _start_gateway(env, tmp_path, *options):
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port), *options],
        env,
        tmp_path / f"gateway-{port}.log",
    )
    proc.url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(f"{proc.url}/health", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    wait_for(up, what="gateway")
    return proc
