"""The visitor's address behind proxies (S1): what rate limits and stream slots key on.

Forwarding headers count only when the peer is a trusted proxy (`limits.trusted_proxies`); anyone else could
write any address into them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted if entry.strip())


def _parse_ip(value: str | None) -> IPAddress | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getlist: Any = getattr(headers, "getlist", None)
    if getlist is not None:  # Starlette: a repeated header must not hide the proxy's own hop
        values = getlist(name)
        return ",".join(values) if values else None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def client_ip(peer: str | None, headers: Mapping[str, str], trusted_proxies: Sequence[str]) -> str:
    """The address to key limits on (S1): forwarding headers count only when the peer is a trusted proxy.

    X-Forwarded-For is read right to left, skipping trusted proxies; the first untrusted hop is the client.
    """
    peer_ip = _parse_ip(peer)
    if peer_ip is None:
        return peer or "unknown"
    networks = _networks(tuple(trusted_proxies))

    def trusted(ip: IPAddress) -> bool:
        return any(ip in network for network in networks)

    if not trusted(peer_ip):
        return str(peer_ip)
    forwarded = _header(headers, "x-forwarded-for")
    if forwarded:
        nearest = peer_ip
        for hop in reversed(forwarded.split(",")):
            ip = _parse_ip(hop)
            if ip is None:  # garbage: stop at the last address a trusted proxy vouched for
                return str(nearest)
            if not trusted(ip):
                return str(ip)
            nearest = ip
        return str(nearest)
    real = _parse_ip(_header(headers, "x-real-ip"))
    return str(real or peer_ip)


def public_scheme_and_host(
    peer: str | None, scheme: str, headers: Mapping[str, str], trusted_proxies: Sequence[str]
) -> tuple[str, str]:
    """The scheme and host the visitor's browser used to reach us (what its Origin header must name on a form
    post, and whether cookies must be Secure). Behind a trusted proxy (`limits.trusted_proxies`) its
    X-Forwarded-Proto and X-Forwarded-Host count (the first value: the hop nearest the visitor); from anyone
    else only the request's own scheme and Host header do. Normalise with `backend.curation.sites.origin_or_none`."""
    host = (_header(headers, "host") or "").strip()
    peer_ip = _parse_ip(peer)
    if peer_ip is not None and any(peer_ip in network for network in _networks(tuple(trusted_proxies))):
        proto = (_header(headers, "x-forwarded-proto") or "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
        forwarded_host = (_header(headers, "x-forwarded-host") or "").split(",")[0].strip()
        if forwarded_host:
            host = forwarded_host
    return scheme.lower(), host
