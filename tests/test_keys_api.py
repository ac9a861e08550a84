"""The admin keys API (service/routers/keys.py): create, list and revoke keys at run time, in-process
through the gateway's lifespan, with configured keys of two projects beside the bare test key."""

from __future__ import annotations

import asyncio
import time

import pytest

from access import key_store, keyring
from access.grants import Role, digest, key_id_of
from access.keyring import KeyRing
from tests.conftest import API_KEY

A_READ = "a-read-key-0123456789"
A_SUBMIT = "a-submit-key-0123456789"


@pytest.fixture
def env(env):
    return {**env, "IFCFLOW_API_KEYS": f"{API_KEY},second-key,a:read:{A_READ},a:submit:{A_SUBMIT}"}


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def test_an_admin_creates_a_key_shown_once_that_works_with_its_project_and_role(client):
    r = await client.post("/keys", json={"project": "b", "role": "submit", "name": "CI of b"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["key"].startswith("ifk_") and made["key_id"] == key_id_of(digest(made["key"]))
    assert {k: made[k] for k in ("project", "role", "name", "source")} == {
        "project": "b", "role": "submit", "name": "CI of b", "source": "runtime"}
    assert made["created_at"] and made["created_by"] == key_id_of(digest(API_KEY))
    assert r.headers["cache-control"] == "no-store"
    # It works at once, with its role: it reads, but manages no keys.
    assert (await client.get("/jobs", headers=as_key(made["key"]))).status_code == 200
    refused = await client.get("/keys", headers=as_key(made["key"]))
    assert refused.status_code == 403 and "admin role" in refused.json()["detail"]


async def test_listing_shows_configured_and_run_time_keys_but_never_a_key(client):
    made = (await client.post("/keys", json={"project": "a", "role": "read"})).json()
    await client.post("/keys", json={"project": "b", "role": "admin", "name": "ops"})
    r = await client.get("/keys")
    assert r.status_code == 200
    listed = r.json()["keys"]
    for secret in (API_KEY, "second-key", A_READ, A_SUBMIT, made["key"]):
        assert secret not in r.text
    assert all("key" not in entry for entry in listed)
    configured = [(e["key_id"], e["project"], e["role"]) for e in listed if e["source"] == "configured"]
    assert configured == [
        (key_id_of(digest(API_KEY)), "default", "admin"),  # a bare key: default's admin, as before projects
        (key_id_of(digest("second-key")), "default", "admin"),
        (key_id_of(digest(A_READ)), "a", "read"),
        (key_id_of(digest(A_SUBMIT)), "a", "submit"),
    ]
    assert [(e["project"], e["role"], e["name"]) for e in listed if e["source"] == "runtime"] == [
        ("a", "read", ""), ("b", "admin", "ops")]

    only_a = (await client.get("/keys", params={"project": "a"})).json()["keys"]
    assert [(e["source"], e["role"]) for e in only_a] == [("configured", "read"), ("configured", "submit"),
                                                          ("runtime", "read")]
    bad = await client.get("/keys", params={"project": "A/B"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "project"]


async def test_a_revoked_key_is_refused_at_once_and_revoking_it_again_is_404(client):
    made = (await client.post("/keys", json={"project": "a", "role": "submit"})).json()
    assert (await client.get("/jobs", headers=as_key(made["key"]))).status_code == 200  # cached by this gateway now
    r = await client.delete(f"/keys/{made['key_id']}")
    assert r.status_code == 204 and r.content == b""
    refused = await client.get("/jobs", headers=as_key(made["key"]))
    assert refused.status_code == 403 and refused.json()["detail"] == "invalid API key"
    assert made["key_id"] not in (await client.get("/keys")).text
    again = await client.delete(f"/keys/{made['key_id']}")
    assert again.status_code == 404 and again.json()["detail"] == f"key {made['key_id']} not found"


async def test_a_configured_key_is_not_revocable_and_the_answer_says_to_edit_the_setting(client):
    key_id = key_id_of(digest(A_SUBMIT))
    r = await client.delete(f"/keys/{key_id}")
    assert r.status_code == 409
    assert r.json()["detail"] == (f"key {key_id} is configured in IFCFLOW_API_KEYS: remove it from that setting and "
                                  "restart the gateways to revoke it")
    assert (await client.get("/jobs", headers=as_key(A_SUBMIT))).status_code == 200


@pytest.mark.parametrize(("body", "field", "said"), [
    ({"project": "Team A", "role": "read"}, "project", "lower-case letters, digits"),
    ({"project": "-a", "role": "read"}, "project", "starting with a letter or digit"),
    ({"project": "a", "role": "owner"}, "role", "'read', 'submit' or 'admin'"),
    ({"role": "read"}, "project", "Field required"),
    ({"project": "a", "role": "read", "name": "x\nfake audit line"}, "name", "should match pattern"),
    ({"project": "a", "role": "read", "key": "mine"}, "key", "Extra inputs are not permitted"),
])
async def test_a_bad_key_request_is_422_naming_the_field(client, body, field, said):
    r = await client.post("/keys", json=body)
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", field] and said in error["msg"]


async def test_keys_are_managed_only_with_an_admin_key(client):
    for key in (A_READ, A_SUBMIT):
        for method, path in (("GET", "/keys"), ("POST", "/keys"), ("DELETE", "/keys/key_0123456789ab")):
            r = await client.request(method, path, headers=as_key(key), json={"project": "a", "role": "admin"})
            assert r.status_code == 403, (key, method, r.text)
    assert (await client.get("/keys", headers={"X-API-Key": ""})).status_code == 401


async def test_another_gateway_refuses_a_revoked_key_within_its_cache_time(aredis, monkeypatch):
    monkeypatch.setattr(keyring, "CACHE_SECONDS", 0.2)
    key, record = await key_store.create(aredis, "a", Role.submit, "", created_by="test")
    here, there = KeyRing([], aredis), KeyRing([], aredis)
    assert (await here.authenticate(key)) == (await there.authenticate(key)) == record.caller()
    await key_store.revoke(aredis, record.key_id)
    here.forget(record.key_id)
    assert await here.authenticate(key) is None  # the gateway that revoked it: at once
    assert await there.authenticate(key) is not None  # another: from its cache, for a moment
    revoked_at = time.monotonic()
    while await there.authenticate(key) is not None:
        assert time.monotonic() - revoked_at < 5, "another gateway kept accepting a revoked key past its cache time"
        await asyncio.sleep(0.02)
