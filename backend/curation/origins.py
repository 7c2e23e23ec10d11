"""Origins (`scheme://host[:port]`) parsed and normalised by one function, for every place that stores or compares
one: registered sites, the Origin header of a chat request or a dashboard form, and the dashboard's own origin."""

from __future__ import annotations

import ipaddress
import re

import idna


class OriginError(ValueError):
    """A site origin that is not `scheme://host[:port]`; the message says what is wrong with it."""


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LONGEST = 1024  # scheme, a host of 253 characters (more before punycode), a port
_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_NOT_IN_AUTHORITY = (("/", "a path"), ("\\", "a backslash"), ("?", "a query"), ("#", "a fragment"), ("@", "user info"))


def normalize_origin(origin: str) -> str:
    """The one parser of site origins (C2): `https://Bücher.Example:443/` → `https://xn--bcher-kva.example`.

    http or https; a DNS host name (labels of a-z, 0-9 and '-', 1-63 characters, not starting or ending with
    '-', 253 at most; an international name becomes its punycode), an IPv4 address or a bracketed IPv6 one;
    a port from 1 to 65535 (the scheme's default dropped); nothing else (one trailing '/' is dropped).
    OriginError (a ValueError) naming what is wrong otherwise: wildcards, spaces, control characters, empty
    labels, paths, queries, user info. `sites add`, storage and the Origin check of `admit_site` all use it.
    """
    shown = _shown(origin)
    text = origin.strip(" \t")
    if len(text) > _LONGEST:  # before any per-character work: an Origin header is the visitor's to choose
        raise OriginError(f"{shown}: {len(text)} characters, longer than any origin ({_LONGEST} at most)")
    odd = next((char for char in text if char.isspace() or not char.isprintable()), None)
    if odd is not None:
        raise OriginError(f"{shown}: an origin has no spaces or control characters (U+{ord(odd):04X})")
    matched = _SCHEME.fullmatch(text)
    scheme = matched.group(1).lower() if matched else ""
    if matched is None or scheme not in _DEFAULT_PORTS:
        raise OriginError(f"not an http(s) origin: {shown} (e.g. https://blog.example.com)")
    rest = matched.group(2).removesuffix("/")
    for char, what in _NOT_IN_AUTHORITY:
        if char in rest:
            raise OriginError(f"an origin is scheme://host[:port] only, {shown} has {what}")
    if rest.startswith("["):
        literal, bracket, port_part = rest[1:].partition("]")
        if not bracket or (port_part and not port_part.startswith(":")):
            raise OriginError(f"{shown}: an IPv6 address is written [address] or [address]:port")
        host, port_text = f"[{_ipv6(literal, shown)}]", port_part[1:] if port_part else None
    else:
        name, colon, port_text_or_empty = rest.partition(":")
        if ":" in port_text_or_empty:
            raise OriginError(f"{shown}: a host name has no ':' (an IPv6 address goes in brackets)")
        host, port_text = _host(name, shown), port_text_or_empty if colon else None
    port = _port(port_text, shown)
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def origin_or_none(origin: str | None) -> str | None:
    """`normalize_origin(origin)`, or None when there is none or it is malformed (such an origin matches nothing)."""
    if not origin:
        return None
    try:
        return normalize_origin(origin)
    except OriginError:
        return None


def _shown(origin: str) -> str:
    return repr(origin if len(origin) <= 80 else f"{origin[:77]}...")


def _port(text: str | None, shown: str) -> int | None:
    if text is None:
        return None
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise OriginError(f"{shown}: the port must be a number from 1 to 65535")
    return int(text)


def _host(name: str, shown: str) -> str:
    if not name:
        raise OriginError(f"{shown}: the origin has no host")
    if "*" in name:
        raise OriginError(f"{shown}: a wildcard never matches a browser's Origin; list each origin instead")
    if not name.isascii():
        try:  # as browsers do: UTS 46 mapping (lower case, full-width forms), IDNA 2008, non-transitional
            name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise OriginError(f"{shown}: not a valid international domain name ({exc})") from exc
    name = name.lower()
    labels = name.split(".")
    if "" in labels:
        raise OriginError(f"{shown}: the host has an empty label (as in a..b, .a or a.)")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):  # a browser reads it as an IPv4 address
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise OriginError(f"{shown}: not a valid IPv4 address (four numbers 0-255)") from None
    for label in labels:
        if len(label) > 63:
            raise OriginError(f"{shown}: a host label is {len(label)} characters long, 63 at most")
        if not _LABEL.fullmatch(label):
            raise OriginError(f"{shown}: host label {_shown(label)} may use only a-z, 0-9 and '-' (not first or last)")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError) as exc:
                raise OriginError(f"{shown}: host label {_shown(label)} is not valid punycode") from exc
    if len(name) > 253:
        raise OriginError(f"{shown}: the host is {len(name)} characters long, 253 at most")
    return name


def _ipv6(literal: str, shown: str) -> str:
    """The address as browsers write it (RFC 5952: lower case, the longest run of zero groups as '::')."""
    try:
        if "%" in literal:  # a zone id is local to one machine; no Origin carries one
            raise ValueError(literal)
        groups = [int(group, 16) for group in ipaddress.IPv6Address(literal).exploded.split(":")]
    except ValueError:
        raise OriginError(f"{shown}: not a valid IPv6 address") from None
    start, length = 0, 0
    for first in range(8):
        run = next((n for n in range(8 - first) if groups[first + n] != 0), 8 - first)
        if run > length:
            start, length = first, run
    text = [f"{group:x}" for group in groups]
    if length < 2:
        return ":".join(text)
    return f"{':'.join(text[:start])}::{':'.join(text[start + length :])}"
