"""Video pages and channels through yt-dlp's Python API: captions and subtitles only, never the media.

A page yt-dlp's generic extractor reads (an HTML5 `<video>` with `<track kind="subtitles|captions">`) is one item;
a platform channel or playlist lists its videos, each then extracted for its subtitles (that needs the platform to
be reachable). Subtitles (a creator's own first, automatic captions otherwise; WebVTT preferred) become a
timestamped transcript whose citations link to the video page at `#t=<seconds>`.

Every request yt-dlp makes goes through the channel's `Fetcher` (a request handler of its own replaces yt-dlp's),
so the SSRF guard, robots.txt, the byte limit and the timeouts hold for it too.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from typing import Any

from pipeline.channels.content import transcript_blocks
from pipeline.channels.http import Fetcher, FetchError, Response, Validators
from pipeline.channels.types import Content, Fetched, Item, Listing, Source, digest
from pipeline.sources.common import ParseError, collapse

DEFAULT_VIDEOS = 50
_SUBTITLE_EXTS = ("vtt", "srt", "json3", "srv3", "ttml")  # the ones we read come first
_PREFERRED_LANGUAGES = ("en", "en-US", "en-GB")


class _Quiet:
    """yt-dlp's logger: nothing printed (its errors come back as exceptions)."""

    def debug(self, msg: str) -> None: ...
    def info(self, msg: str) -> None: ...
    def warning(self, msg: str) -> None: ...
    def error(self, msg: str) -> None: ...


def _handler_class(fetcher: Fetcher, errors: threading.local) -> type:
    """A yt-dlp request handler that sends every request through `fetcher`."""
    from yt_dlp.networking.common import RequestHandler
    from yt_dlp.networking.common import Response as YtResponse
    from yt_dlp.networking.exceptions import HTTPError, TransportError

    class LorechatRH(RequestHandler):
        _SUPPORTED_URL_SCHEMES = ("http", "https")
        _SUPPORTED_PROXY_SCHEMES = None
        _SUPPORTED_FEATURES = None

        def _check_extensions(self, extensions: dict[str, Any]) -> None:
            for name in ("cookiejar", "timeout", "legacy_ssl", "keep_header_casing", "impersonate"):
                extensions.pop(name, None)

        def _send(self, request: Any) -> Any:
            if request.method not in ("GET", "HEAD"):
                raise TransportError(f"lorechat only reads ({request.method} refused)")
            try:
                response = fetcher.get(request.url, expect="any")
            except FetchError as exc:
                errors.last = exc
                if exc.status is not None:
                    raise HTTPError(YtResponse(io.BytesIO(b""), request.url, {}, status=exc.status)) from None
                raise TransportError(exc.reason) from None
            return YtResponse(io.BytesIO(response.body), response.url, response.headers, status=response.status)

    return LorechatRH


def extract(url: str, fetcher: Fetcher, *, playlist_items: int | None = None) -> dict[str, Any]:
    """yt-dlp's info for a page, playlist or channel (flat: a playlist's entries are not extracted one by one)."""
    import yt_dlp
    from yt_dlp.utils import DownloadError

    errors = threading.local()
    handler = _handler_class(fetcher, errors)

    class Guarded(yt_dlp.YoutubeDL):
        def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
            return super().build_request_director([handler], preferences)

    options: dict[str, Any] = {
        "quiet": True, "no_warnings": True, "noprogress": True, "skip_download": True, "logger": _Quiet(),
        "extract_flat": "in_playlist", "cachedir": False, "socket_timeout": fetcher.settings.timeout_seconds,
        "http_headers": {"User-Agent": fetcher.settings.user_agent}, "proxy": "", "color": "never",
    }  # fmt: skip
    if playlist_items:
        options["playlistend"] = playlist_items
    try:
        with Guarded(options) as ydl:
            info = ydl.extract_info(url, download=False, process=False)
    except DownloadError as exc:
        last = getattr(errors, "last", None)
        if isinstance(last, FetchError):
            raise last from None
        message = collapse(str(exc).removeprefix("ERROR: "))[:300]
        raise FetchError(f"yt-dlp could not read {url}: {message}") from None
    if not isinstance(info, dict):
        raise FetchError(f"yt-dlp found nothing at {url}")
    return info


def subtitles_of(info: dict[str, Any]) -> list[dict[str, str]]:
    """The subtitle tracks to try, best first: the creator's own before automatic captions, English first, then
    formats we read (WebVTT first)."""
    tracks: list[tuple[int, int, int, dict[str, str]]] = []
    for rank, field in enumerate(("subtitles", "automatic_captions")):
        for language, formats in (info.get(field) or {}).items():
            if language == "live_chat" or not isinstance(formats, list):
                continue
            lang_rank = _PREFERRED_LANGUAGES.index(language) if language in _PREFERRED_LANGUAGES else 9
            for fmt in formats:
                if not isinstance(fmt, dict) or not fmt.get("url"):
                    continue
                ext = str(fmt.get("ext") or fmt["url"].rsplit("?", 1)[0].rsplit(".", 1)[-1]).lower()
                if ext not in ("vtt", "srt") and not str(fmt["url"]).lower().split("?")[0].endswith((".vtt", ".srt")):
                    ext_rank = 9  # json3/srv3/ttml: not read; tried last (a server may still send WebVTT)
                else:
                    ext_rank = _SUBTITLE_EXTS.index(ext) if ext in _SUBTITLE_EXTS else 0
                tracks.append((rank, lang_rank, ext_rank, {"url": str(fmt["url"]), "ext": ext, "language": language}))
    tracks.sort(key=lambda t: t[:3])
    return [track for *_, track in tracks]


class VideoConnector:
    kind = "video"

    def list_items(self, source: Source, http: Fetcher) -> Listing:
        info = extract(source.url, http, playlist_items=source.max_items or DEFAULT_VIDEOS)
        if info.get("_type") in ("playlist", "multi_video"):
            items: list[Item] = []
            whole = True
            for entry in info.get("entries") or []:
                if not isinstance(entry, dict):
                    continue
                if entry.get("_type") not in ("url", "url_transparent"):  # a page with several <video>s: each whole
                    items.append(self._single(entry, source.url))
                    continue
                whole = False
                url = str(entry.get("webpage_url") or entry.get("url") or "")
                if not url.startswith(("http://", "https://")):
                    continue
                key = f"{entry.get('ie_key') or entry.get('extractor') or 'video'}:{entry.get('id') or url}"
                title = collapse(str(entry.get("title") or "")) or url
                items.append(Item(key=key, url=url, title=title, published=_date(entry), token=digest(key, title)))
                if len(items) >= (source.max_items or DEFAULT_VIDEOS):
                    break
            # A channel lists its latest videos: a window, and what yt-dlp lists of it is not known to be whole.
            return Listing(items=items, complete=whole and bool(items))
        return Listing(items=[self._single(info, source.url)], complete=True)

    def _single(self, info: dict[str, Any], url: str) -> Item:
        page = str(info.get("webpage_url") or url)
        title = collapse(str(info.get("title") or "")) or page
        tracks = subtitles_of(info)
        if info.get("extractor") in ("generic", "html5"):  # a page's own <video>: yt-dlp numbers them "Title (1)"
            key = f"{page}#{info.get('id')}"
            title = re.sub(r" \(\d+\)$", "", title)
        else:
            key = f"{info.get('extractor')}:{info.get('id')}"
        return Item(
            key=key, url=page, title=title, published=_date(info), token=digest(key, title, tracks),
            data={"tracks": tracks},
        )  # fmt: skip

    def fetch(self, item: Item, http: Fetcher, validators: Validators | None, *, indexed: bool = False) -> Fetched:
        tracks = item.data.get("tracks")
        if tracks is None:  # a channel's entry: extract the video itself for its subtitles
            tracks = subtitles_of(extract(item.url, http))
        if not tracks:
            raise FetchError("no captions or subtitles: nothing to index (the media itself is never downloaded)")
        problems: list[str] = []
        for track in tracks:
            try:
                response: Response = http.get(track["url"], expect="transcript")
                cues = transcript_blocks(response, "text/vtt" if track.get("ext") == "vtt" else None)
            except FetchError as exc:
                problems.append(exc.reason)
                continue
            except ParseError as exc:
                problems.append(f"{track['url']}: {exc.reason}")
                continue
            return Fetched(Content(item.title, tuple(cues), "transcript", url=item.url, published=item.published))
        raise FetchError("; ".join(problems))


def _date(info: dict[str, Any]) -> str | None:
    day = str(info.get("upload_date") or info.get("release_date") or "")
    return f"{day[:4]}-{day[4:6]}-{day[6:8]}" if len(day) == 8 and day.isdigit() else None


logging.getLogger("yt_dlp").setLevel(logging.ERROR)
