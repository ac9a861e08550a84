"""``POST /download-from-url``: fetch one http(s) URL into ``uploads/``, streamed to disk, with progress.

Every hop (the URL and each redirect) must pass ``contracts.fetch_rules``: allowed form and host, and
every address its host resolves to public or on an allowed network. Resolution happens in the
connection's own resolver, so the addresses checked are the ones connected to (no DNS rebinding).
Refusals are 422 (the job fails at once), an upstream 4xx is 424, a bigger file than allowed 413;
an upstream 5xx or a lost connection is 502, which the worker retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from contracts.compat_requests import DownloadUrlRequest
from contracts.fetch_rules import FetchRefused, IPNetwork, check_addresses, check_url, parse_networks
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput, ServiceError
from settings import get_settings

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=120)
_CHUNK = 1024 * 1024
_HEADERS = {"User-Agent": "ifcflow-download/1", "Accept": "*/*"}


class _CheckedResolver(AbstractResolver):
    """Resolves as usual, then refuses hosts with any address that may not be connected to."""

    def __init__(self, networks: list[IPNetwork]) -> None:
        self._inner = ThreadedResolver()
        self._networks = networks
        self.refused: FetchRefused | None = None

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        try:
            check_addresses(host, [str(info["host"]) for info in infos], self._networks)
        except FetchRefused as exc:
            self.refused = exc
            raise OSError(str(exc)) from None
        return infos

    async def close(self) -> None:
        await self._inner.close()


def _check_hop(url: str, allowed_hosts: list[str], networks: list[IPNetwork]) -> None:
    target = check_url(url, allowed_hosts)
    try:
        ipaddress.ip_address(target.host)
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    check_addresses(target.host, [target.host], networks)  # aiohttp connects to literal addresses unresolved


class _Sink:
    def __init__(self, handle: Any, limit: int, total: int | None, ctx: TaskContext) -> None:
        self.handle, self.limit, self.total, self.ctx = handle, limit, total, ctx
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise ServiceError(f"url: the file is larger than the limit of {self.limit} bytes "
                               "(IFCFLOW_DOWNLOAD_MAX_BYTES)", error_type="too_large", status_code=413)
        self.handle.write(chunk)
        self.digest.update(chunk)
        if self.total:
            self.ctx.progress(1 + 98 * self.size / self.total, "downloading")
        else:
            self.ctx.progress(50, f"downloading ({self.size // _CHUNK} MiB so far)")


async def _download(request: DownloadUrlRequest, staged: Path, ctx: TaskContext) -> tuple[_Sink, str, str]:
    settings = get_settings()
    networks = parse_networks(settings.download_allowed_networks)
    resolver = _CheckedResolver(networks)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    url = request.url
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session:
            for _hop in range(MAX_REDIRECTS + 1):
                _check_hop(url, settings.download_allowed_hosts, networks)
                async with session.get(url, allow_redirects=False, headers=_HEADERS) as resp:
                    if resp.status in _REDIRECTS and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    _check_status(resp.status)
                    if resp.content_length is not None and resp.content_length > settings.download_max_bytes:
                        raise ServiceError(f"url: the file is {resp.content_length} bytes, over the limit of "
                                           f"{settings.download_max_bytes} (IFCFLOW_DOWNLOAD_MAX_BYTES)",
                                           error_type="too_large", status_code=413)
                    with staged.open("wb") as handle:
                        sink = _Sink(handle, settings.download_max_bytes, resp.content_length, ctx)
                        async for chunk in resp.content.iter_chunked(_CHUNK):
                            sink.write(chunk)
                    return sink, resp.content_type, url
    except FetchRefused as exc:
        raise BadInput(f"url: {_hop_word(url, request.url)}{exc}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        if resolver.refused is not None:
            raise BadInput(f"url: {_hop_word(url, request.url)}{resolver.refused}") from None
        raise ServiceError(f"url: download failed: {type(exc).__name__}: {exc}".rstrip(": "),
                           error_type="download_failed", status_code=502) from None
    raise BadInput(f"url: more than {MAX_REDIRECTS} redirects")


def _hop_word(url: str, first: str) -> str:
    return "" if url == first else f"redirect to {url} refused: "


def _check_status(status: int) -> None:
    if status == 200:
        return
    if status >= 500 or status == 429:
        raise ServiceError(f"url: the server answered HTTP {status}", error_type="upstream_error", status_code=502)
    raise ServiceError(f"url: the server answered HTTP {status}", error_type="upstream_refused", status_code=424)


def run(request: DownloadUrlRequest, ctx: TaskContext) -> dict[str, Any]:
    """Download the URL to ``uploads/<name>`` (written whole or not at all)."""
    try:
        name = request.stored_name()
    except ValueError as exc:
        raise BadInput(f"output_filename: the URL gives no usable file name ({exc}); send output_filename") from None
    ctx.progress(1, "connecting")
    with ctx.output(f"uploads/{name}") as staged:
        sink, content_type, final_url = asyncio.run(_download(request, staged, ctx))
    return {
        "message": f"File downloaded successfully as {name}",
        "file_path": f"/uploads/{name}",
        "original_filename": name,
        "storage_basename": name,
        "size_bytes": sink.size,
        "sha256": sink.digest.hexdigest(),
        "content_type": content_type,
        "final_url": final_url,
        "source_etag": request.source_etag,
        "output_files": ctx.output_files,
    }
