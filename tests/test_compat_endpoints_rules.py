"""The rules behind ifcpipeline's endpoints, without servers: which addresses a download may reach,
how a recipe's arguments are typed and refused, and what a download token carries."""

from __future__ import annotations

import time

import pytest

from contracts.download_tokens import TokenRefused, mint, verify
from contracts.fetch_rules import FetchRefused, address_allowed, check_addresses, check_url, parse_networks
from contracts.patch_args import ArgumentRefused, coerce

LOOPBACK = parse_networks(["127.0.0.0/8"])


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "100.64.0.1",
    "169.254.169.254", "fe80::1%eth0", "fc00::1", "0.0.0.0", "224.0.0.1", "ff02::1", "240.0.0.1", "192.0.2.1",
])
def test_no_private_loopback_link_local_or_reserved_address_is_allowed_by_default(address):
    assert not address_allowed(address, [])


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert address_allowed(address, [])


def test_an_allowed_network_lets_its_addresses_through_and_no_others():
    assert address_allowed("127.0.0.1", LOOPBACK) and address_allowed("::ffff:127.0.0.2", LOOPBACK)
    assert not address_allowed("10.0.0.1", LOOPBACK) and not address_allowed("::1", LOOPBACK)
    # One bad address among a host's answers refuses the host (a rebinding name answers both).
    with pytest.raises(FetchRefused, match=r"10\.0\.0\.1"):
        check_addresses("mixed.example", ["93.184.215.14", "10.0.0.1"], [])
    with pytest.raises(FetchRefused, match="does not resolve"):
        check_addresses("nothing.example", [], [])


def test_urls_need_http_a_host_no_credentials_and_the_allowlist():
    assert check_url("https://example.com/a.ifc", ["*"]).port == 443
    assert check_url("http://files.example.com:8080/a.ifc", ["*.example.com"]).port == 8080
    for url, words in [("ftp://example.com/a", "http or https"), ("http://u:p@example.com/", "credentials"),
                       ("http://example.org/a", "not allowed"), ("http://[::1/", "not a valid URL")]:
        with pytest.raises(FetchRefused, match=words):
            check_url(url, ["*.example.com", "example.com"])
    with pytest.raises(ValueError):
        parse_networks(["not-a-network"])


PARAMETERS = [
    {"name": "query", "types": ["str"], "required": True},
    {"name": "count", "types": ["int"], "required": False},
    {"name": "scale", "types": ["str", "float"], "required": False},
    {"name": "flag", "types": ["bool"], "required": False},
    {"name": "unit", "types": [], "enum_items": ["METER", "FOOT"], "required": False},
    {"name": "files", "types": ["str"], "generic_type": "Sequence", "path_role": "input", "required": False},
]


def test_text_arguments_get_the_parameters_types():
    resolved: list[str] = []

    def resolve(role: str, value: str) -> str:
        resolved.append(role)
        return f"uploads/{value}"

    args = coerce("R", PARAMETERS, ["IfcWall", "3", "1.5", "false", "FOOT", '["a.ifc", "b.ifc"]'], resolve)
    assert args == ["IfcWall", 3, "1.5", False, "FOOT", ["uploads/a.ifc", "uploads/b.ifc"]]
    assert resolved == ["input", "input"]
    assert coerce("R", PARAMETERS, ["IfcWall", 2.0, 2, True, "METER", "one.ifc"], resolve)[1:4] == [2, 2.0, True]


@pytest.mark.parametrize("arguments, index, words", [
    ([], 0, "needs argument 0, query"),
    (["q", "many"], 1, "expected int"),
    (["q", 1, [1]], 2, "expected str or float"),
    (["q", 1, 1, "perhaps"], 3, "expected bool"),
    (["q", 1, 1, True, "PARSEC"], 4, "one of METER, FOOT"),
    (["q", 1, 1, True, "FOOT", [], "extra"], 6, "takes 6 argument"),
])
def test_arguments_that_do_not_fit_are_refused_naming_them(arguments, index, words):
    with pytest.raises(ArgumentRefused, match=words) as caught:
        coerce("R", PARAMETERS, arguments)
    assert caught.value.index == index


def test_tokens_carry_a_path_until_they_expire_and_cannot_be_altered():
    token, grant = mint(b"k", "output/x.glb", 60, now=1000)
    assert verify(b"k", token, now=1059).path == "output/x.glb" and grant.expires_at == 1060
    with pytest.raises(TokenRefused) as expired:
        verify(b"k", token, now=1060)
    assert expired.value.status_code == 410
    forged, _ = mint(b"other", "output/x.glb", 60, now=1000)
    elsewhere = mint(b"other", "uploads/secret.ifc", 60, now=1000)[0].partition(".")[0]
    for bad in (forged, elsewhere + "." + token.partition(".")[2], "x", "", "a.b.c", "." * 5000):
        with pytest.raises(TokenRefused) as refused:
            verify(b"k", bad, now=1000)
        assert refused.value.status_code == 403
    assert verify(b"k", mint(b"k", "uploads/a.ifc", 1)[0]).expires_at <= time.time() + 1


@pytest.fixture
def fetch_settings(monkeypatch, tmp_path):
    """Settings of an ifcpatch service process for the fetch tool: any host, no private network."""
    from settings import get_settings

    monkeypatch.setenv("IFCFLOW_DOWNLOAD_ALLOWED_HOSTS", "*")
    monkeypatch.delenv("IFCFLOW_DOWNLOAD_ALLOWED_NETWORKS", raising=False)
    get_settings.cache_clear()
    (tmp_path / "uploads").mkdir()
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.asyncio
async def test_each_connection_checks_where_its_host_resolves_so_rebinding_gets_nowhere():
    from ifcservices.tools.fetch import _CheckedResolver

    refusing = _CheckedResolver([])
    with pytest.raises(OSError, match=r"127\.0\.0\.1"):
        await refusing.resolve("localhost", 80)
    assert refusing.refused is not None
    allowing = _CheckedResolver(LOOPBACK)
    assert "127.0.0.1" in [r["host"] for r in await allowing.resolve("localhost", 80)]
    await refusing.close()
    await allowing.close()


@pytest.mark.asyncio
async def test_the_fetch_refuses_a_name_that_resolves_to_loopback_when_it_connects(fetch_settings):
    """What a rebinding name looks like to the service: public when the gateway checked, loopback now."""
    import asyncio

    from aiohttp import web

    from contracts.compat_requests import DownloadUrlRequest
    from ifcservices.context import TaskContext
    from ifcservices.errors import BadInput
    from ifcservices.tools.fetch import run
    from tests.conftest import serve

    async def secret(request: web.Request) -> web.Response:
        return web.Response(body=b"secret")

    app = web.Application()
    app.router.add_get("/a.ifc", secret)
    async with serve(app) as url:
        port = url.rsplit(":", 1)[1]
        request = DownloadUrlRequest(url=f"http://localhost:{port}/a.ifc")
        with pytest.raises(BadInput, match="resolves to"):
            await asyncio.to_thread(run, request, TaskContext(data_dir=fetch_settings))
    assert not (fetch_settings / "uploads" / "a.ifc").exists()
    assert not list((fetch_settings / "uploads").iterdir()), "no partial file is left"
