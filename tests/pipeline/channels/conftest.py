"""Channel tests' fixtures: a real local web server, and channel settings for it (loopback allowed, no delay)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backend.settings import ChannelSettings
from tests.fakes.web_server import WebServer


@pytest.fixture
def web() -> Iterator[WebServer]:
    with WebServer().running() as server:
        yield server


@pytest.fixture
def channel_settings() -> ChannelSettings:
    return ChannelSettings(
        allow_private_networks=True, per_host_delay_seconds=0.0, timeout_seconds=1.0, item_seconds=2.0,
        max_item_bytes=1024 * 1024,
    )  # fmt: skip
