"""Which URLs ``POST /download-from-url`` may fetch: the webhook rules, plus where the host resolves to.

A URL is fetched only when its scheme is http(s), it carries no credentials, its host matches
``IFCFLOW_DOWNLOAD_ALLOWED_HOSTS`` (``contracts.webhooks``' patterns), and every address the host
resolves to is public (globally routable) or inside ``IFCFLOW_DOWNLOAD_ALLOWED_NETWORKS``. The gateway
checks at submit (a clear 422); the service checks again for every connection it opens and every
redirect hop, with the addresses it checked pinned for the connection, so a DNS answer that changes
in between (rebinding) cannot lead it into the private network.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from contracts.webhooks import CallbackRefused, check_callback_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchRefused(ValueError):
    """A URL (or one it redirects to) that may not be fetched; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    host: str
    port: int


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """``["127.0.0.0/8", "10.1.2.3"]`` as networks; a bad entry is a ``ValueError`` naming it."""
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip()]


def check_url(url: str, allowed_hosts: list[str]) -> Target:
    """The URL's host and port if its form and host are allowed; else ``FetchRefused``."""
    try:
        check_callback_url(url, allowed_hosts)
    except CallbackRefused as exc:
        reason = str(exc).removeprefix("callback_url: ").replace("IFCFLOW_CALLBACK_ALLOWED_HOSTS",
                                                                  "IFCFLOW_DOWNLOAD_ALLOWED_HOSTS")
        raise FetchRefused(reason) from None
    parts = urlsplit(url)
    assert parts.hostname is not None  # check_callback_url refuses URLs without a host
    return Target(url, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


def address_allowed(address: str, networks: list[IPNetwork]) -> bool:
    """Whether a resolved address may be connected to: public, or on an allowed network."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    if any(ip in network for network in networks):
        return True
    return ip.is_global and not ip.is_multicast


def check_addresses(host: str, addresses: list[str], networks: list[IPNetwork]) -> list[str]:
    """``addresses`` if there are any and all are allowed; else ``FetchRefused`` naming the first refused."""
    if not addresses:
        raise FetchRefused(f"host {host!r} does not resolve")
    for address in addresses:
        if not address_allowed(address, networks):
            raise FetchRefused(
                f"host {host!r} resolves to {address}, a loopback, private, link-local or reserved address "
                "(allow a network with IFCFLOW_DOWNLOAD_ALLOWED_NETWORKS)"
            )
    return addresses


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (blocking: for worker threads and child processes)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"host {host!r} does not resolve ({exc})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
