"""C2: site origins are parsed and normalised by one function (backend/curation/origins.py);
anything that is not `scheme://host[:port]` is refused with a message naming what is wrong, and never matches an
Origin."""

from __future__ import annotations

import pytest

from backend.curation.origins import OriginError, normalize_origin, origin_or_none

LONG_LABEL = "a" * 64
LONG_HOST = ".".join(["a" * 63] * 4)  # 255 characters


@pytest.mark.parametrize(
    ("origin", "normalised"),
    [
        ("https://blog.example.com", "https://blog.example.com"),
        ("HTTPS://Blog.Example.COM:443/", "https://blog.example.com"),
        ("http://blog.example.com:80", "http://blog.example.com"),
        ("https://blog.example.com:8443", "https://blog.example.com:8443"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("  https://intranet  ", "https://intranet"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("https://[2001:DB8:0:0:0:0:0:1]:443", "https://[2001:db8::1]"),
        ("https://[2001:db8:0:1:0:0:0:1]", "https://[2001:db8:0:1::1]"),  # the longest zero run
        ("https://[::ffff:1.2.3.4]", "https://[::ffff:102:304]"),  # as browsers write it
        ("https://Bücher.example", "https://xn--bcher-kva.example"),  # IDN → punycode
        ("https://BÜCHER.example", "https://xn--bcher-kva.example"),
        ("https://ｂｌｏｇ．example", "https://blog.example"),  # full-width forms, as browsers map them
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
        ("https://a-b.c0.example:0080", "https://a-b.c0.example:80"),
        (f"https://{'a' * 63}.example", f"https://{'a' * 63}.example"),
    ],
)
def test_c2_origins_are_normalised(origin: str, normalised: str) -> None:
    assert normalize_origin(origin) == normalised
    assert normalize_origin(normalised) == normalised  # idempotent: stored and compared forms agree


@pytest.mark.parametrize(
    ("origin", "complaint"),
    [
        ("https://*.example.com", "wildcard"),
        ("https://*", "wildcard"),
        ("https://exa mple.com", "no spaces or control characters (U+0020)"),
        ("https://ex<ample>.com", "may use only a-z, 0-9 and '-'"),
        (f"https://{LONG_LABEL}.example", "64 characters long, 63 at most"),
        (f"https://{'a' * 300}.example", "63 at most"),
        (f"https://{LONG_HOST}", "253 at most"),
        ("http://a..b", "empty label"),
        ("https://.example.com", "empty label"),
        ("https://example.com.", "empty label"),
        ("https://-blog.example", "not first or last"),
        ("https://blog-.example", "not first or last"),
        ("https://my_blog.example", "may use only"),
        ("https://blog%2eexample", "may use only"),
        ("https://blog.example\r", "control characters (U+000D)"),
        ("https://blog.example\n", "control characters (U+000A)"),
        ("https://blog\x00.example", "control characters (U+0000)"),
        ("https://exa\u202emple.com", "control characters (U+202E)"),
        ("https://exa\u200bmple.com", "control characters (U+200B)"),
        ("https://\udcff.example", "control characters (U+DCFF)"),
        ("https://blog.example\u3000", "control characters (U+3000)"),
        ("ftp://files.example", "not an http(s) origin"),
        ("javascript://blog.example", "not an http(s) origin"),
        ("blog.example.com", "not an http(s) origin"),
        ("https:blog.example", "not an http(s) origin"),
        ("null", "not an http(s) origin"),
        ("", "not an http(s) origin"),
        ("https://", "no host"),
        ("https://:443", "no host"),
        ("https://blog.example/path", "has a path"),
        ("https://blog.example//", "has a path"),
        ("https://blog.example?x=1", "has a query"),
        ("https://blog.example#top", "has a fragment"),
        ("https://user:pw@blog.example", "has user info"),
        ("https://evil.example\\@blog.example", "has a backslash"),
        ("https://blog.example:0", "port must be a number from 1 to 65535"),
        ("https://blog.example:65536", "1 to 65535"),
        ("https://blog.example:99999999999", "1 to 65535"),
        ("https://blog.example:", "1 to 65535"),
        ("https://blog.example:8o", "1 to 65535"),
        ("https://blog.example:+80", "1 to 65535"),
        ("https://blog.example:٨٠", "1 to 65535"),  # Arabic-Indic digits are not a port
        ("https://blog.example:80:80", "has no ':'"),
        ("https://::1", "has no ':'"),
        ("https://[::1", "[address]:port"),
        ("https://[::1]x", "[address]:port"),
        ("https://[zz::1]", "not a valid IPv6 address"),
        ("https://[fe80::1%25eth0]", "not a valid IPv6 address"),
        ("https://[1.2.3.4]", "not a valid IPv6 address"),
        ("https://1.2.3.256", "not a valid IPv4 address"),
        ("https://1.2.3", "not a valid IPv4 address"),
        ("https://blog.123", "not a valid IPv4 address"),
        ("https://0x7f.1", "not a valid IPv4 address"),
        ("https://01.2.3.4", "not a valid IPv4 address"),
        ("https://xn--a.example", "not valid punycode"),
        ("https://bü<cher.example", "not a valid international domain name"),
        ("https://☃\u0000.example", "control characters"),
        ("https://" + "é" * 5000 + ".example", "longer than any origin"),
    ],
)
def test_c2_malformed_origins_are_refused_naming_the_problem(origin: str, complaint: str) -> None:
    with pytest.raises(OriginError) as caught:
        normalize_origin(origin)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert complaint in message
    assert message.isprintable() and len(message) < 400  # the origin is quoted inert and cut short
    assert origin_or_none(origin) is None  # as an Origin header: matches nothing


def test_c2_origin_or_none_takes_missing_headers() -> None:
    assert origin_or_none(None) is None and origin_or_none("") is None
    assert origin_or_none("https://Blog.example:443") == "https://blog.example"
