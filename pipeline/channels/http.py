"""Every request a channel makes: polite, bounded and refused where it must not go.

- **SSRF guard**: a host is resolved before each connection, and an address that is not public (private, loopback,
  link-local, shared, reserved, multicast; IPv4-mapped ones too) is refused unless
  `channels.allow_private_networks`; the connection goes to the address that was checked, so a DNS answer cannot
  change in between. Redirects are followed here, one hop at a time, each checked the same way.
- **Politeness**: robots.txt is read once per origin per sync and honoured (RFC 9309: unreachable means disallow
  all, a 4xx means allow all), per-host concurrency and a least delay between request starts (a larger
  Crawl-delay wins), a User-Agent naming lorechat.
- **Bounds**: connect/read timeouts, a deadline for the whole response (a slow drip ends), a byte limit checked on
  Content-Length and while reading (decompressed size included), a redirect limit and loop detection, the content
  type checked against what the caller expects.
- **Change detection**: If-None-Match / If-Modified-Since from the caller's validators; a 304 comes back as such.

`FetchError`'s text is one line a curator can act on; it is what the sync report shows per item.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import urllib.robotparser
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpcore

from backend.settings import ChannelSettings

Expect = Literal["xml", "html", "transcript", "text", "any"]

_REDIRECTS = {301, 302, 303, 307, 308}
ROBOTS_MAX_BYTES = 512 * 1024
_XML_TYPES = ("xml", "rss", "atom", "rdf")
_LENIENT_TYPES = {"", "text/plain", "application/octet-stream", "binary/octet-stream"}
_GZIP_TYPES = {"application/gzip", "application/x-gzip"}
_TRANSCRIPT_TYPES = {
    "text/vtt", "application/x-subrip", "application/srt", "text/srt", "text/x-srt", "application/json",
    "text/json", "text/html", "application/xhtml+xml",
}  # fmt: skip


class FetchError(Exception):
    """A request that did not give a usable answer. `str()` is one line, safe to show a curator."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class AddressRefused(FetchError):
    """The host resolves to an address channels may not reach (SSRF guard)."""


class _Refused(Exception):
    """Raised inside the connection pool; turned into AddressRefused with the URL it was for."""


@dataclass(frozen=True, slots=True)
class Validators:
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    url: str  # after redirects
    status: int  # 200 (any 2xx) or 304
    headers: dict[str, str]
    body: bytes = b""

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                return value.strip("\"' ")
        return None

    @property
    def validators(self) -> Validators:
        return Validators(etag=self.headers.get("etag"), last_modified=self.headers.get("last-modified"))

    def text(self) -> str:
        """The body as text: its declared charset, else UTF-8 (with a BOM or not), else Latin-1 as a last resort."""
        for encoding in (self.charset, "utf-8-sig"):
            if encoding:
                try:
                    return self.body.decode(encoding)
                except (UnicodeDecodeError, LookupError):
                    continue
        return self.body.decode("latin-1")


@dataclass(slots=True)
class Counters:
    """Requests made by one fetcher (one sync), for reports and the bench."""

    requests: int = 0
    not_modified: int = 0
    failed: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, status: int | None, size: int = 0, robots: bool = False) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += size
            if status == 304:
                self.not_modified += 1
            elif status is None or status >= 500 or (status >= 400 and not robots):  # a missing robots.txt is fine
                self.failed += 1

    def as_json(self) -> dict[str, int]:
        return {"total": self.requests, "not_modified": self.not_modified, "failed": self.failed, "bytes": self.bytes}


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host and no credentials, fragment dropped; FetchError otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"not a usable URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs can be read, not {parts.scheme or 'a relative URL'!r}")
    if not parts.hostname:
        raise FetchError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise FetchError("URLs with a user name or password are refused")
    if port == 0:
        raise FetchError("port 0 is not a port")
    if any(ch.isspace() or ord(ch) < 32 for ch in url.strip()):
        raise FetchError("the URL holds spaces or control characters")
    host = parts.hostname
    if not host.isascii():  # an internationalised name travels as punycode
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise FetchError(f"{parts.hostname!r} is not a valid host name") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def public_address(address: str) -> bool:
    """Whether an address is one channels may reach without allow_private_networks: globally routable unicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (literal addresses resolve to themselves)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(host: str, port: int, *, allowed: Callable[[str], bool] | None = public_address) -> list[str]:
    """The addresses to connect to; AddressRefused when any of them is not `allowed` (None: every address is)."""
    addresses = resolve(host, port)
    if allowed is not None:
        blocked = [address for address in addresses if not allowed(address)]
        if blocked:
            what = host if blocked[0] == host.strip("[]") else f"{host} resolves to {blocked[0]}, which"
            raise AddressRefused(
                f"{what} is a private, loopback or link-local address: refused "
                "(set channels.allow_private_networks to read from a trusted private network)"
            )
    return addresses


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, connecting only to addresses that passed the SSRF check for this very connection."""

    def __init__(self, *, allowed: Callable[[str], bool] | None) -> None:
        self._inner = httpcore.SyncBackend()
        self._allowed = allowed

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = check_host(host, port, allowed=self._allowed)
        except FetchError as exc:
            raise _Refused(exc) from None
        last: Exception | None = None
        for address in addresses:
            try:
                # TLS still names `host` (httpcore passes the URL's host as server_hostname), so certificates check.
                return self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        raise _Refused(FetchError("unix sockets are never reached"))

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _HostGate:
    """Per-host politeness: at most `concurrency` requests in flight, starts at least `delay` seconds apart."""

    def __init__(self, concurrency: int) -> None:
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._next_start = 0.0

    @contextmanager
    def turn(self, delay: float) -> Iterator[None]:
        with self._slots:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next_start)
                self._next_start = start + delay
            if start > now:
                time.sleep(start - now)
            yield


@dataclass(slots=True)
class _Robots:
    parser: urllib.robotparser.RobotFileParser | None  # None: allow everything
    refusal: str | None = None  # set: disallow everything, for this reason
    delay: float = 0.0


class Fetcher:
    """One sync's HTTP client (thread-safe): `get` with validators, limits, robots and the SSRF guard."""

    def __init__(
        self,
        settings: ChannelSettings,
        *,
        address_allowed: Callable[[str], bool] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """`address_allowed` decides which resolved addresses may be reached: public ones by default, every one with
        `allow_private_networks` (tests narrow it to prove a redirect is checked again). Once `stop` is set (the
        service shutting down), every request fails at once."""
        self.settings = settings
        self._stop = stop
        self.counters = Counters()
        allowed = address_allowed or (None if settings.allow_private_networks else public_address)
        self._allowed = allowed
        self._pool = httpcore.ConnectionPool(
            network_backend=_GuardedBackend(allowed=allowed),
            max_connections=64,
            max_keepalive_connections=16,
            keepalive_expiry=30.0,
        )
        self._lock = threading.Lock()
        self._gates: dict[str, _HostGate] = {}
        self._robots: dict[str, _Robots] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._agent = settings.user_agent

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_address(self, url: str) -> None:
        """The SSRF guard alone, without a request: AddressRefused (or FetchError) for a URL channels may not read."""
        parts = urlsplit(check_url(url))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        check_host(parts.hostname or "", port, allowed=self._allowed)

    def get(
        self,
        url: str,
        *,
        expect: Expect = "any",
        validators: Validators | None = None,
        max_bytes: int | None = None,
        robots: bool = True,
    ) -> Response:
        """GET `url`, following redirects (each hop checked: scheme, address, robots). A 304 is returned as such
        when validators were sent; any other non-2xx answer is a FetchError naming the status."""
        if self._stop is not None and self._stop.is_set():
            raise FetchError("stopped: the service is shutting down")
        limit = max_bytes or self.settings.max_item_bytes
        current = check_url(url)
        seen = {current}
        deadline = time.monotonic() + self.settings.item_seconds
        for _hop in range(self.settings.max_redirects + 1):
            if robots:
                self._check_robots(current)
            status, headers, body = self._request(
                current, validators=validators, limit=limit, deadline=deadline, for_robots=not robots
            )
            if status in _REDIRECTS:
                location = headers.get("location")
                if not location:
                    raise FetchError(f"{status} redirect without a Location from {current}", status=status)
                target = check_url(urljoin(current, location))
                if target in seen:
                    raise FetchError(f"redirect loop at {target}", status=status)
                seen.add(target)
                current = target
                continue
            if status == 304 and validators is not None:
                return Response(url=current, status=304, headers=headers)
            if not 200 <= status < 300:
                raise FetchError(f"the server answered {status} for {current}", status=status)
            response = Response(url=current, status=status, headers=headers, body=body)
            check_type(response, expect)
            return response
        raise FetchError(f"more than {self.settings.max_redirects} redirects from {url}")

    def _request(
        self, url: str, *, validators: Validators | None, limit: int, deadline: float, for_robots: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        headers = [
            (b"User-Agent", self._agent.encode()),
            (b"Accept-Encoding", b"gzip"),
            (b"Accept", b"*/*"),
        ]
        if validators is not None and validators.etag:
            headers.append((b"If-None-Match", validators.etag.encode("latin-1", "replace")))
        if validators is not None and validators.last_modified:
            headers.append((b"If-Modified-Since", validators.last_modified.encode("latin-1", "replace")))
        timeout = self.settings.timeout_seconds
        extensions = {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}
        gate = self._gate(parts.netloc)
        status: int | None = None
        size = 0
        try:
            with gate.turn(self._delay(parts.scheme, parts.netloc)):
                with self._pool.stream("GET", url, headers=headers, extensions=extensions) as response:
                    status = response.status
                    answer = {
                        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers
                    }
                    if status >= 300:  # redirects, 304 and errors: the head is the answer
                        return status, answer, b""
                    declared = answer.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise FetchError(f"{url} is {int(declared):,} bytes, over the {limit:,}-byte limit")
                    body = _read(response.iter_stream(), answer.get("content-encoding", ""), limit, deadline, url)
                    size = len(body)
                    return status, answer, body
        except _Refused as exc:
            raise AddressRefused(str(exc.args[0])) from None
        except httpcore.TimeoutException:
            raise FetchError(f"timed out after {timeout:g} s waiting for {url}") from None
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise FetchError(f"connection to {parts.netloc} failed ({_why(exc)})") from None
        except httpcore.UnsupportedProtocol as exc:
            raise FetchError(f"cannot read {url} ({exc})") from None
        finally:
            self.counters.add(status=status, size=size, robots=for_robots)

    def _gate(self, host: str) -> _HostGate:
        with self._lock:
            gate = self._gates.get(host)
            if gate is None:
                gate = self._gates[host] = _HostGate(self.settings.per_host_concurrency)
            return gate

    def _delay(self, scheme: str, netloc: str) -> float:
        robots = self._robots.get(_origin(scheme, netloc))
        return max(self.settings.per_host_delay_seconds, robots.delay if robots else 0.0)

    def _check_robots(self, url: str) -> None:
        parts = urlsplit(url)
        rules = self._robots_for(_origin(parts.scheme, parts.netloc))
        if rules.refusal is not None:
            raise FetchError(rules.refusal)
        if rules.parser is not None and not rules.parser.can_fetch(self._agent, url):
            raise FetchError(f"robots.txt of {parts.netloc} disallows {url} for lorechat")

    def _robots_for(self, origin: str) -> _Robots:
        with self._lock:
            known = self._robots.get(origin)
            if known is not None:
                return known
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:  # one fetch of robots.txt per origin, however many threads ask at once
            known = self._robots.get(origin)
            if known is None:
                known = self._read_robots(origin)
                with self._lock:
                    self._robots[origin] = known
            return known

    def _read_robots(self, origin: str) -> _Robots:
        url = f"{origin}/robots.txt"
        try:
            response = self.get(url, robots=False, max_bytes=ROBOTS_MAX_BYTES)
        except AddressRefused:
            raise
        except FetchError as exc:
            # RFC 9309 2.3.1: a 4xx means there are no rules; an unreachable robots.txt means disallow all.
            if exc.status is not None and 400 <= exc.status < 500:
                return _Robots(parser=None)
            return _Robots(
                parser=None,
                refusal=f"robots.txt of {urlsplit(origin).netloc} could not be read ({exc.reason}); "
                "nothing is fetched from that host until it can (RFC 9309)",
            )
        parser = urllib.robotparser.RobotFileParser(url)
        parser.parse(response.text().splitlines())
        delay = parser.crawl_delay(self._agent)
        return _Robots(parser=parser, delay=min(float(delay or 0.0), 60.0))


def check_type(response: Response, expect: Expect) -> None:
    """Refuse a body whose Content-Type says it is not what the caller can read."""
    kind = response.content_type
    if expect == "any":
        return
    if expect == "xml":
        if any(word in kind for word in _XML_TYPES) or kind in _LENIENT_TYPES or kind in _GZIP_TYPES:
            return
    elif expect == "html":
        if kind in ("text/html", "application/xhtml+xml") or (kind in _LENIENT_TYPES and _looks_html(response.body)):
            return
    elif expect == "transcript":
        if kind in _TRANSCRIPT_TYPES or kind in _LENIENT_TYPES:
            return
    elif expect == "text":
        if kind.startswith("text/") or kind in _LENIENT_TYPES:
            return
    raise FetchError(f"{response.url} is {kind or 'of no declared type'}, not {_EXPECTED[expect]}")


_EXPECTED = {
    "xml": "an XML feed or sitemap",
    "html": "an HTML page",
    "transcript": "a transcript (WebVTT, SRT, JSON or HTML)",
    "text": "text",
    "any": "anything",
}


def _looks_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<body" in head


def _read(chunks: Iterable[bytes], encoding: str, limit: int, deadline: float, url: str) -> bytes:
    """The body, decompressed if gzip'd, never more than `limit` bytes, read before `deadline`."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding.strip().lower() in ("gzip", "x-gzip") else None
    parts: list[bytes] = []
    total = 0
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise FetchError(f"{url} was still arriving after the per-item deadline (a slow response); abandoned")
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, limit - total + 1)
            except zlib.error as exc:
                raise FetchError(f"{url}: broken gzip body ({exc})") from None
            if inflate.unconsumed_tail:
                raise FetchError(f"{url} decompresses to more than the {limit:,}-byte limit")
        total += len(chunk)
        if total > limit:
            raise FetchError(f"{url} is larger than the {limit:,}-byte limit; not read")
        parts.append(chunk)
    return b"".join(parts)


def gunzip(data: bytes, limit: int, what: str) -> bytes:
    """A gzip'd body (a sitemap.xml.gz), decompressed within `limit` bytes."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(data, limit + 1)
    except zlib.error as exc:
        raise FetchError(f"{what}: broken gzip ({exc})") from None
    if len(out) > limit or inflate.unconsumed_tail:
        raise FetchError(f"{what} decompresses to more than the {limit:,}-byte limit")
    return out


def _origin(scheme: str, netloc: str) -> str:
    return f"{scheme}://{netloc.lower()}"


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text and text[0] else type(exc).__name__
