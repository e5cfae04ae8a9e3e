"""Where webhooks may go: http(s) URLs that resolve only to global unicast addresses.

Checked when an endpoint is saved and again before every send (a name can be re-pointed at a
private address after it was accepted: DNS rebinding); the sender then connects to the very
address it checked. Cloud metadata addresses are refused even when private ones are allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})

Resolver = Callable[[str, int], list[str]]


class UnsafeAddress(ValueError):
    """The URL is malformed or points somewhere webhooks must not go."""


@dataclass(frozen=True)
class EndpointUrl:
    """The parts of an endpoint URL the sender needs."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        """The Host header: the name, with the port when it is not the default."""
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"

    def pinned(self, address: str) -> str:
        """The URL with its host replaced by a checked address."""
        where = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{where}:{self.port}{self.target}"


def parse_endpoint_url(url: str) -> EndpointUrl:
    """Split an endpoint URL, refusing what a webhook URL must not be."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeAddress(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not url.startswith(("http://", "https://")):
        raise UnsafeAddress("the URL must start with http:// or https:// (lowercase)")
    if parts.username is not None or parts.password is not None:
        raise UnsafeAddress("the URL must not carry credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeAddress("the URL has no host")
    if any(c.isspace() for c in url):
        raise UnsafeAddress("the URL must not contain whitespace")
    if port == 0:
        raise UnsafeAddress("the URL's port must be between 1 and 65535")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return EndpointUrl(
        scheme=parts.scheme,
        host=host.lower(),
        port=port or (443 if parts.scheme == "https" else 80),
        target=target,
    )


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries and reaches (IPv4-mapped, IPv4-compatible,
    6to4, NAT64 well-known prefix, Teredo client); empty for IPv4 and plain IPv6."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client): both are reached through it
    if address in NAT64_WELL_KNOWN:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d
        found.append(ipaddress.IPv4Address(int(address)))
    return found


def _not_global_unicast(address: IPAddress) -> str | None:
    if address.is_multicast:
        return f"{address} is a multicast address"
    if address.is_global:
        return None
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_private:
        return f"{address} is a private address"
    return f"{address} is not a public address"


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a webhook may not go to ``address``; None when it may.

    Only global unicast addresses are allowed. An IPv6 address that carries an IPv4 address
    (IPv4-mapped or -compatible, 6to4, NAT64, Teredo) is judged by the IPv4 address it reaches.
    """
    inner = embedded_ipv4(address)
    for candidate in (address, *inner):
        if candidate in METADATA_ADDRESSES:
            return f"{address} is (or carries) the cloud metadata address {candidate}"
    if allow_private:
        return None
    if address in NAT64_LOCAL_USE:
        return f"{address} is a local-use NAT64 address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if inner:
        for v4 in inner:
            problem = _not_global_unicast(v4)
            if problem:
                return f"{address} carries {v4}: {problem}"
        return None
    return _not_global_unicast(address)


def resolve_checked(
    url: EndpointUrl, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[str]:
    """The addresses to connect to; UnsafeAddress if any of them is not allowed."""
    if url.host in METADATA_HOSTS:
        raise UnsafeAddress(f"{url.host} is a cloud metadata host")
    try:
        literal: IPAddress | None = ipaddress.ip_address(url.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolver(url.host, url.port)
        except (OSError, UnicodeError) as exc:
            raise UnsafeAddress(f"cannot resolve {url.host}: {exc}") from exc
    if not addresses:
        raise UnsafeAddress(f"{url.host} resolves to no address")
    for text in addresses:
        # Refuse when any answer is unsafe: an attacker may mix records.
        problem = address_problem(
            ipaddress.ip_address(text.split("%", 1)[0]), allow_private=allow_private
        )
        if problem:
            raise UnsafeAddress(f"{url.host} resolves to {problem}")
    return addresses
