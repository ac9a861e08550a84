"""``ifcflow keys create|list|revoke`` against a real gateway process, whose log is read for the audit
lines (and for any trace of a key, which must never be in it)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from access.grants import digest, key_id_of
from cli.client_commands import run_client
from cli.connection import EXIT_OK, EXIT_REFUSED, resolve_connection
from cli.main import parse
from tests.conftest import API_KEY, Gateway, start_gateway

A_READ = "a-read-key-for-the-cli-0123456789"


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def own_gateway(env, tmp_path) -> Iterator[Gateway]:
    """A gateway of this test's own, so its log holds only this test's lines."""
    gateway = start_gateway({**env, "IFCFLOW_API_KEYS": f"{API_KEY},a:read:{A_READ}"}, tmp_path / "gateway.log")
    try:
        yield gateway
    finally:
        gateway.process.stop()


@pytest.fixture
def cli(own_gateway):
    async def call(*argv: str, key: str = API_KEY) -> Ran:
        out, err = io.StringIO(), io.StringIO()
        environ = {"IFCFLOW_URL": own_gateway.url, "IFCFLOW_API_KEY": key}
        code = await asyncio.wait_for(asyncio.to_thread(lambda: run_client(parse(list(argv)), out, err, environ)), 60)
        return Ran(code, out.getvalue(), err.getvalue())

    return call


async def test_keys_are_created_listed_and_revoked_from_the_command_line(cli, own_gateway):
    made = await cli("keys", "create", "--project", "acme", "--role", "submit", "--name", "CI of acme")
    assert made.code == EXIT_OK, made.err
    key = made.out.strip()
    assert key.startswith("ifk_") and made.out == key + "\n"  # the key alone on stdout: KEY=$(ifcflow keys create)
    key_id = key_id_of(digest(key))
    assert f"created {key_id}: project acme, role submit" in made.err and "not shown again" in made.err
    async with httpx.AsyncClient(base_url=own_gateway.url, headers={"X-API-Key": key}) as api:
        assert (await api.get("/jobs")).status_code == 200

    listed = await cli("keys", "list")
    assert listed.code == EXIT_OK and key not in listed.out and API_KEY not in listed.out
    rows = [line.split() for line in listed.out.splitlines()]
    assert rows[0] == ["KEY_ID", "PROJECT", "ROLE", "SOURCE", "CREATED", "NAME"]
    assert rows[1][:5] == [key_id_of(digest(API_KEY)), "default", "admin", "configured", "-"]
    assert rows[2][:5] == [key_id_of(digest(A_READ)), "a", "read", "configured", "-"]
    assert rows[3][:4] == [key_id, "acme", "submit", "runtime"] and rows[3][5:] == ["CI", "of", "acme"]
    only = await cli("keys", "list", "--project", "acme", "--json")
    assert [(k["key_id"], k["source"]) for k in json.loads(only.out)] == [(key_id, "runtime")]

    revoked = await cli("keys", "revoke", key_id)
    assert revoked.code == EXIT_OK and f"revoked {key_id}" in revoked.err
    async with httpx.AsyncClient(base_url=own_gateway.url, headers={"X-API-Key": key}) as api:
        assert (await api.get("/jobs")).status_code == 403
    gone = await cli("keys", "revoke", key_id)
    assert gone.code == EXIT_REFUSED and f"key {key_id} not found" in gone.err

    # The audit log says who made and revoked which key; no line of the log holds a key.
    lines = own_gateway.process.log_lines()
    audits = [(line["action"], line["target_key_id"], line["key_id"], line["project"])
              for line in lines if line.get("event") == "audit"]
    me = key_id_of(digest(API_KEY))
    assert audits == [("key.create", key_id, me, "default"), ("key.revoke", key_id, me, "default")]
    log_text = own_gateway.process.log_path.read_text()
    assert key not in log_text and API_KEY not in log_text and A_READ not in log_text


async def test_a_configured_key_cannot_be_revoked_and_the_cli_says_which_setting_to_edit(cli):
    ran = await cli("keys", "revoke", key_id_of(digest(A_READ)))
    assert ran.code == EXIT_REFUSED
    assert "409 Conflict" in ran.err and "configured in IFCFLOW_API_KEYS" in ran.err


async def test_a_key_that_is_not_admin_is_refused_key_management(cli):
    ran = await cli("keys", "list", key=A_READ)
    assert ran.code == EXIT_REFUSED and "needs the admin role" in ran.err


async def test_a_bad_project_name_is_refused_naming_the_field(cli):
    ran = await cli("keys", "create", "--project", "Acme Corp", "--role", "read")
    assert ran.code == EXIT_REFUSED and "project: project 'Acme Corp': lower-case letters" in ran.err


def test_the_cli_takes_the_key_of_a_project_entry_of_ifcflow_api_keys():
    conn = resolve_connection(None, None, {"IFCFLOW_API_KEYS": f"a:submit:{A_READ},{API_KEY}"})
    assert conn.api_key == A_READ
    assert resolve_connection(None, None, {"IFCFLOW_API_KEYS": API_KEY}).api_key == API_KEY
