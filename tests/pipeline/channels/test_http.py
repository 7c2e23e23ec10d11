"""Every request a channel makes (CH3, CH5): the SSRF guard after DNS and on every redirect, robots.txt, limits on
time, bytes and redirects, content types, XML bombs, the User-Agent, per-host politeness and 304s, against a real
local HTTP server."""

from __future__ import annotations

import time

import pytest

from backend.settings import ChannelSettings
from pipeline.channels.content import XmlRefused, parse_xml
from pipeline.channels.http import AddressRefused, Fetcher, FetchError, check_host, public_address
from tests.fakes.web_server import Fault, WebServer
from tests.pipeline.channels.corpus import RSS, xml_bomb


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "224.0.0.1", "::"],
)  # fmt: skip
def test_ch5_non_public_addresses_are_refused(address: str) -> None:
    assert not public_address(address)
    with pytest.raises(AddressRefused, match="private, loopback or link-local address: refused"):
        check_host(address, 80)


def test_ch5_public_addresses_pass_the_guard() -> None:
    for address in ("93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"):
        assert public_address(address)
        assert check_host(address, 443) == [address]


def test_ch5_a_private_address_is_refused_by_default_after_dns(web: WebServer) -> None:
    web.put("/feed.xml", "<rss version='2.0'><channel/></rss>", RSS)
    with Fetcher(ChannelSettings()) as http:
        for url in (web.url("/feed.xml"), web.url("/feed.xml").replace("127.0.0.1", "localhost")):
            with pytest.raises(AddressRefused) as refused:
                http.get(url)
            assert "allow_private_networks" in str(refused.value)
    assert web.requests() == []  # refused before connecting: the server saw nothing


def test_ch5_every_redirect_is_checked_again(web: WebServer, channel_settings: ChannelSettings) -> None:
    # Only 127.0.0.1 counts as allowed here; a redirect to 127.0.0.2 stands for one into a private network.
    port = web.url("/").split(":")[2].split("/")[0]
    web.fault("/hop", Fault("redirect", status=302, location=f"http://127.0.0.2:{port}/feed.xml"))
    with Fetcher(channel_settings, address_allowed=lambda address: address == "127.0.0.1") as http:
        with pytest.raises(AddressRefused, match=r"127\.0\.0\.2"):
            http.get(web.url("/hop"))
    assert [r.path for r in web.requests()] == ["/robots.txt", "/hop"]


def test_ch5_redirect_loops_and_chains_end(web: WebServer, channel_settings: ChannelSettings) -> None:
    web.fault("/a", Fault("redirect", status=301, location="/b"))
    web.fault("/b", Fault("redirect", status=302, location="/a"))
    for hop in range(8):
        web.fault(f"/chain/{hop}", Fault("redirect", status=307, location=f"/chain/{hop + 1}"))
    web.put("/chain/8", "end", "text/plain")
    with Fetcher(channel_settings) as http:
        with pytest.raises(FetchError, match="redirect loop"):
            http.get(web.url("/a"))
        with pytest.raises(FetchError, match="more than 5 redirects"):
            http.get(web.url("/chain/0"))
        assert http.get(web.url("/chain/3")).body == b"end"  # five hops: within the limit


def test_ch5_bodies_over_the_byte_limit_are_refused(web: WebServer, channel_settings: ChannelSettings) -> None:
    fifty_mb = 50 * 1024 * 1024
    web.fault("/declared.xml", Fault("big", size=fifty_mb, declare_length=True))
    web.fault("/streamed.xml", Fault("big", size=fifty_mb, declare_length=False))
    with Fetcher(channel_settings) as http:
        started = time.monotonic()
        with pytest.raises(FetchError, match="over the 1,048,576-byte limit"):
            http.get(web.url("/declared.xml"))
        with pytest.raises(FetchError, match="larger than the 1,048,576-byte limit"):
            http.get(web.url("/streamed.xml"))
        assert time.monotonic() - started < 5  # never read the 50 MB
        assert http.counters.bytes < 2 * 1024 * 1024


def test_ch5_a_stalled_server_times_out_and_a_slow_drip_is_abandoned(
    web: WebServer, channel_settings: ChannelSettings
) -> None:
    web.fault("/stall.xml", Fault("stall", seconds=3))
    web.fault("/drip.xml", Fault("drip", seconds=0.1))  # a byte every 0.1 s: never a read timeout
    with Fetcher(channel_settings) as http:
        started = time.monotonic()
        with pytest.raises(FetchError, match="timed out after 1 s"):
            http.get(web.url("/stall.xml"))
        assert time.monotonic() - started < 2.5
        started = time.monotonic()
        with pytest.raises(FetchError, match="slow response"):
            http.get(web.url("/drip.xml"))
        assert time.monotonic() - started < 4  # item_seconds = 2


def test_ch5_a_truncated_body_is_an_error(web: WebServer, channel_settings: ChannelSettings) -> None:
    web.fault("/cut.xml", Fault("truncate", size=10_000))
    with Fetcher(channel_settings) as http, pytest.raises(FetchError, match=r"connection to .* failed"):
        http.get(web.url("/cut.xml"))


def test_ch5_robots_txt_is_honoured(web: WebServer, channel_settings: ChannelSettings) -> None:
    web.put(
        "/robots.txt", "User-agent: *\nDisallow: /private/\n\nUser-agent: lorechat\nDisallow: /drafts/\n", "text/plain"
    )
    web.put("/private/a.html", "<p>secret</p>", "text/html")
    web.put("/drafts/b.html", "<p>draft</p>", "text/html")
    web.put("/public/c.html", "<p>hello</p>", "text/html")
    with Fetcher(channel_settings) as http:
        with pytest.raises(FetchError, match=r"robots\.txt of .* disallows"):
            http.get(web.url("/drafts/b.html"))
        assert http.get(web.url("/public/c.html")).body == b"<p>hello</p>"
        assert http.get(web.url("/private/a.html")).body == b"<p>secret</p>"  # the lorechat group replaces '*'
    assert [r.path for r in web.requests()].count("/robots.txt") == 1  # read once per origin
    assert "/drafts/b.html" not in [r.path for r in web.requests()]


def test_ch5_an_unreadable_robots_txt_disallows_everything(web: WebServer, channel_settings: ChannelSettings) -> None:
    web.fault("/robots.txt", Fault("status", status=503))
    web.put("/feed.xml", "<rss/>", RSS)
    with Fetcher(channel_settings) as http, pytest.raises(FetchError, match=r"robots.txt .* could not be read"):
        http.get(web.url("/feed.xml"))
    assert "/feed.xml" not in [r.path for r in web.requests()]


def test_ch5_content_types_are_checked(web: WebServer, channel_settings: ChannelSettings) -> None:
    web.put("/feed.xml", "<!doctype html><p>not a feed</p>", "text/html")
    web.put("/page.html", b"%PDF-1.7", "application/pdf")
    with Fetcher(channel_settings) as http:
        with pytest.raises(FetchError, match="is text/html, not an XML feed or sitemap"):
            http.get(web.url("/feed.xml"), expect="xml")
        with pytest.raises(FetchError, match="is application/pdf, not an HTML page"):
            http.get(web.url("/page.html"), expect="html")


def test_ch5_xml_entity_bombs_and_external_entities_are_refused_unexpanded() -> None:
    started = time.monotonic()
    with pytest.raises(XmlRefused, match="declares XML entities"):
        parse_xml(xml_bomb().encode(), "bomb.xml")
    external = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><rss>&x;</rss>'
    with pytest.raises(XmlRefused):
        parse_xml(external, "external.xml")
    assert time.monotonic() - started < 0.5


def test_ch5_requests_name_lorechat_and_respect_per_host_pacing(
    web: WebServer, channel_settings: ChannelSettings
) -> None:
    web.put("/a", "a", "text/plain")
    paced = channel_settings.model_copy(update={"per_host_delay_seconds": 0.2, "per_host_concurrency": 1})
    with Fetcher(paced) as http:
        started = time.monotonic()
        for _ in range(3):
            http.get(web.url("/a"))
        elapsed = time.monotonic() - started
    assert elapsed >= 0.6  # robots.txt + three requests, starts 0.2 s apart
    assert {r.agent for r in web.requests()} == {paced.user_agent} and "lorechat" in paced.user_agent


def test_ch3_conditional_requests_come_back_as_304(web: WebServer, channel_settings: ChannelSettings) -> None:
    web.put("/feed.xml", "<rss version='2.0'/>", RSS)
    web.put("/nolm.xml", "<rss version='2.0'/>", RSS, etag=False)
    with Fetcher(channel_settings) as http:
        first = http.get(web.url("/feed.xml"))
        assert first.validators.etag and first.validators.last_modified
        assert http.get(web.url("/feed.xml"), validators=first.validators).not_modified
        by_date = http.get(web.url("/nolm.xml"))
        assert by_date.validators.etag is None
        assert http.get(web.url("/nolm.xml"), validators=by_date.validators).not_modified
        web.put("/feed.xml", "<rss version='2.0'><channel/></rss>", RSS)  # edited: a new ETag
        assert not http.get(web.url("/feed.xml"), validators=first.validators).not_modified
        assert http.counters.not_modified == 2
