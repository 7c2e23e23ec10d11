"""Transcript parsers (SRT, WebVTT): cues with their timestamps, and every malformed timing reported by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.sources import ParseError
from tests.pipeline.source_files import parse, parse_one, write

# --- transcripts ------------------------------------------------------------------------------------


SRT = (
    "\ufeff1\r\n00:00:01,000 --> 00:00:04,500\r\n<i>Hello</i> and\r\nwelcome.\r\n\r\n"
    "2\r\n00:00:05,000 --> 00:01:02,250\r\n{\\an8}Salt &amp; time.\r\n\r\n"
    "3\r\n00:01:03,000 --> 00:01:04,000\r\n<font color=red></font>\r\n\r\n"
    "01:00:00,5 --> 01:00:01,000\r\nNo counter line.\r\n"
)


def test_srt_cues(tmp_path: Path) -> None:
    doc = parse_one(write(tmp_path, "talks/first-talk.srt", SRT))
    assert doc.title == "First talk"
    assert [(b.kind, b.text, b.start_seconds, b.end_seconds) for b in doc.blocks] == [
        ("cue", "Hello and welcome.", 1.0, 4.5),
        ("cue", "Salt & time.", 5.0, 62.25),
        ("cue", "No counter line.", 3600.5, 3601.0),
    ]


VTT = """WEBVTT - Kitchen Talk
Kind: captions

STYLE
::cue { color: yellow; }

NOTE this note
spans lines

intro
00:01.000 --> 00:04.000 align:start position:10% line:85%
<v Ada Lovelace>Feed the <c.yellow>starter</c>.</v>

00:00:04.500 --> 00:00:07.000
<v.loud Bob><00:00:05.000>Then <b>wait</b>.

NOTE trailing
"""


def test_vtt_cues(tmp_path: Path) -> None:
    doc = parse_one(write(tmp_path, "talk.vtt", VTT))
    assert doc.title == "Kitchen Talk"
    assert [(b.text, b.start_seconds, b.end_seconds) for b in doc.blocks] == [
        ("Feed the starter.", 1.0, 4.0),
        ("Then wait.", 4.5, 7.0),
    ]
    assert all(b.kind == "cue" for b in doc.blocks)


def test_vtt_cue_right_after_header(tmp_path: Path) -> None:
    doc = parse_one(write(tmp_path, "tight.vtt", "WEBVTT\n00:00.000 --> 00:02.000\nNo blank line.\n"))
    assert doc.blocks[0].text == "No blank line." and doc.title == "Tight"


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("a.vtt", "WEBVTT\n\n00:01.000 --> 00:0x.000\nBad.\n", r"line 3: malformed cue timing '00:01\.000 --> 00:0x"),
        ("b.vtt", "WEBVTT\n\n00:01.000 -> 00:02.000\nArrow.\n", "line 3: malformed cue timing"),
        ("c.vtt", "WEBVTT\n\n00:75.000 --> 00:76.000\nSeconds.\n", "line 3: malformed cue timing"),
        ("d.vtt", "Hello\n\n00:01.000 --> 00:02.000\nNo header.\n", "first line must be 'WEBVTT'"),
        ("e.vtt", "WEBVTT\n\nNOTE only a note\n", "no cues with text found"),
        ("f.srt", "1\n00:00:05,000 --> 00:00:01,000\nBackwards.\n", "line 2: cue ends before it starts"),
        ("g.srt", "1\n00:00:01 --> 00:00:02\nNo millis.\n", "line 2: malformed cue timing"),
        ("h.srt", "just some words\nnot a subtitle\n", "line 1: malformed cue timing"),
    ],
)
def test_bad_transcripts(tmp_path: Path, name: str, text: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(write(tmp_path, name, text))
