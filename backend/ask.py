"""`lorechat ask`: one turn through the service's own lifespan and ChatService, rendered in the terminal."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape

from backend.app import create_app
from backend.chat.service import TurnRequest
from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings
from backend.stages import format_timestamp


async def ask_in_terminal(
    settings: Settings,
    *,
    question: str,
    creator: str | None,
    personality_weight: float,
    conversation_id: str | None,
) -> None:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    # A one-shot question: wait for the local model to start (bounded) instead of skipping it.
    app = create_app(settings, wait_for_models_seconds=60.0)
    async with app.router.lifespan_context(app) as state:
        profile = state["catalog"].creator(creator) if creator else None
        if creator and profile is None:
            raise LorechatError(ErrorCode.unknown_creator, f"Unknown creator '{creator}'")
        chat = state["chat"]
        turn = await chat.prepare(
            TurnRequest(
                question=question,
                creator=profile,
                conversation_id=conversation_id,
                personality_weight=personality_weight,
                owner_id=None,
                request_id="cli",
            )
        )
        async for frame in chat.stream(turn):
            name, data = _parse(frame)
            if name == "sources":
                _print_sources(err, data)
            elif name == "token":
                sys.stdout.write(data["text"])
                sys.stdout.flush()
            elif name == "done":
                sys.stdout.write("\n")
                err.print(
                    f"[dim]answered by {data['cascade_tier']} · conversation {data['conversation_id']} "
                    f"(continue with --conversation {data['conversation_id']})[/]"
                )
            elif name == "error":
                sys.stdout.write("\n")
                raise LorechatError(ErrorCode(data["code"]), data["message"])


def _parse(frame: bytes) -> tuple[str, dict | list]:
    fields = dict(line.split(": ", 1) for line in frame.decode().strip().splitlines() if ": " in line)
    return fields["event"], json.loads(fields["data"])


def _print_sources(console: Console, sources: list[dict]) -> None:
    if not sources:
        console.print("[dim]No matching sources.[/]")
        return
    console.print("[bold]Sources[/]")
    for source in sources:
        when = f" @ {format_timestamp(source['start_seconds'])}" if source["start_seconds"] is not None else ""
        console.print(f"  [{source['index']}] [cyan]{escape(source['creator'])}[/] · {escape(source['title'])}{when}")
    console.print()
