"""frontend/src/events.ts must declare the same events, fields, optionality and types as backend/stream/events.py."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, create_model

from backend.api.chat import ChatRequest
from backend.storage.records import MessageStatus
from backend.stream import events

EVENTS_TS = Path(__file__).resolve().parents[2] / "frontend" / "src" / "events.ts"

_INTERFACE = re.compile(r"export interface (\w+) \{(.*?)\n\}", re.S)
_FIELD = re.compile(r"^\s*(\w+)(\??):\s*([^;]+);\s*$")
_PRIMITIVES: dict[Any, str] = {int: "number", float: "number", str: "string", bool: "boolean"}

Shape = dict[str, dict[str, tuple[bool, frozenset[str]]]]


def _ts_type(annotation: Any) -> frozenset[str]:
    if get_origin(annotation) in (Union, types.UnionType):
        return frozenset().union(*(_ts_type(arg) for arg in get_args(annotation)))
    if annotation is type(None):
        return frozenset({"null"})
    if get_origin(annotation) is list:  # list[X] is X[] (a list of one type only)
        (item,) = _ts_type(get_args(annotation)[0])
        return frozenset({f"{item}[]"})
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return frozenset({annotation.__name__})
    return frozenset({_PRIMITIVES[annotation]})


def python_shape(models: list[type[BaseModel]]) -> Shape:
    """Model name -> field -> (optional, TypeScript types), from the Pydantic models. An event's `type` is the
    SSE `event:` line, not part of `data`: it is checked through ChatEvent's union instead."""
    return {
        model.__name__: {
            name: (not field.is_required(), _ts_type(field.annotation))
            for name, field in model.model_fields.items()
            if not (name == "type" and get_origin(field.annotation) is Literal)
        }
        for model in models
    }


def typescript_shape(source: str) -> Shape:
    shape: Shape = {}
    for name, body in _INTERFACE.findall(source):
        fields: dict[str, tuple[bool, frozenset[str]]] = {}
        for line in body.strip().splitlines():
            match = _FIELD.match(line)
            assert match, f"events.ts: cannot read field line {line!r} in interface {name}"
            fields[match[1]] = (match[2] == "?", frozenset(part.strip() for part in match[3].split("|")))
        shape[name] = fields
    return shape


def backend_models() -> list[type[BaseModel]]:
    """The event models whose `data` is a JSON object, plus the chat request body."""
    return [
        cls
        for name, cls in vars(events).items()
        if inspect.isclass(cls)
        and issubclass(cls, BaseModel)
        and cls.__module__ == events.__name__
        and not name.startswith("_")
        and cls is not events.SourcesEvent  # its data is a bare Source[] (test_chat_event_union_...)
    ] + [ChatRequest]


def test_interfaces_match_models() -> None:
    python = python_shape(backend_models())
    typescript = typescript_shape(EVENTS_TS.read_text(encoding="utf-8"))
    assert {"Source", "TokenEvent", "Usage", "DoneEvent", "ErrorEvent", "ChatRequest"} <= set(python)
    assert typescript == python


def test_event_names_match() -> None:
    source = EVENTS_TS.read_text(encoding="utf-8")
    declared = re.search(r"export const EVENT_NAMES = \[(.*?)\] as const;", source)
    assert declared, "events.ts must declare EVENT_NAMES"
    names = [name.strip().strip('"') for name in declared[1].split(",")]
    assert names == [member.value for member in events.EventName]


def test_chat_event_union_carries_each_event_model() -> None:
    source = EVENTS_TS.read_text(encoding="utf-8")
    union = dict(re.findall(r'\{ type: "(\w+)"; id: string; data: ([\w\[\]]+) \}', source))
    expected = {"sources": "Source[]", "token": "TokenEvent", "done": "DoneEvent", "error": "ErrorEvent"}
    assert union == expected
    assert set(union) == {member.value for member in events.EventName}
    # The Python union yields the same four, each model's `type` literal naming its SSE event.
    models = get_args(get_args(events.StreamEvent)[0])
    assert {get_args(model.model_fields["type"].annotation)[0]: model.__name__ for model in models} == {
        "sources": "SourcesEvent",
        "token": "TokenEvent",
        "done": "DoneEvent",
        "error": "ErrorEvent",
    }


def test_message_statuses_match() -> None:
    source = EVENTS_TS.read_text(encoding="utf-8")
    declared = re.search(r"export const MESSAGE_STATUSES = \[(.*?)\] as const;", source)
    assert declared, "events.ts must declare MESSAGE_STATUSES"
    assert [name.strip().strip('"') for name in declared[1].split(",")] == [status.value for status in MessageStatus]


def test_check_catches_a_renamed_ts_field() -> None:
    source = EVENTS_TS.read_text(encoding="utf-8").replace("  cascade_tier: string;", "  tier: string;")
    assert typescript_shape(source) != python_shape(backend_models())


def test_check_catches_optionality_and_type_drift() -> None:
    python = python_shape(backend_models())
    optional = EVENTS_TS.read_text(encoding="utf-8").replace("  request_id?: string | null;", "  request_id: string;")
    assert typescript_shape(optional)["ErrorEvent"] != python["ErrorEvent"]
    nullable = EVENTS_TS.read_text(encoding="utf-8").replace("  url: string | null;", "  url: string;")
    assert typescript_shape(nullable)["Source"] != python["Source"]


def test_check_catches_a_field_added_on_the_backend() -> None:
    grown = create_model("TokenEvent", __base__=events.TokenEvent, logprob=(float, ...))
    models = [grown if model is events.TokenEvent else model for model in backend_models()]
    assert python_shape(models)["TokenEvent"] == {
        "text": (False, frozenset({"string"})),
        "logprob": (False, frozenset({"number"})),
    }
    assert typescript_shape(EVENTS_TS.read_text(encoding="utf-8")) != python_shape(models)
