"""`lorechat ask`: one turn through the service's own lifespan and ChatService, rendered in the terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from backend import tracing
from backend.app import create_app
from backend.chat.service import TurnRequest
from backend.errors import ErrorCode, LorechatError
from backend.settings import Settings
from backend.stages import format_timestamp
from backend.stream.events import DoneEvent, ErrorEvent, Source, SourcesEvent


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
        assert state is not None  # our lifespan always yields its State
        profile = state["catalog"].creator(creator) if creator else None
        if creator and profile is None:
            raise LorechatError(ErrorCode.unknown_creator, f"Unknown creator '{creator}'")
        chat = state["chat"]
        trace = tracing.start_turn(surface="cli", creator=creator, question=question)  # a trace when tracing is on
        try:
            with trace.current():
                turn = await chat.prepare(
                    TurnRequest(
                        question=question,
                        creator=profile,
                        conversation_id=conversation_id,
                        personality_weight=personality_weight,
                        owner_id=None,
                        request_id="cli",
                        trace=trace,
                    )
                )
        except BaseException as exc:
            trace.failed(exc)
            raise
        await chat.run(turn, _TerminalSink(err))


class _TerminalSink:
    """The turn's events in the terminal: sources and the closing line on stderr, the answer on stdout."""

    def __init__(self, err: Console) -> None:
        self._err = err

    async def send(self, event: SourcesEvent | DoneEvent | ErrorEvent) -> None:
        if isinstance(event, SourcesEvent):
            _print_sources(self._err, event.sources)
            return
        sys.stdout.write("\n")
        if isinstance(event, ErrorEvent):
            raise LorechatError(ErrorCode(event.code), event.message)
        self._err.print(
            f"[dim]answered by {event.cascade_tier} · conversation {event.conversation_id} "
            f"(continue with --conversation {event.conversation_id})[/]"
        )

    async def send_text(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def detach(self) -> None:
        """A terminal never stops reading; nothing to let go of."""


def _print_sources(console: Console, sources: list[Source]) -> None:
    if not sources:
        console.print("[dim]No matching sources.[/]")
        return
    console.print("[bold]Sources[/]")
    for source in sources:
        when = f" @ {format_timestamp(source.start_seconds)}" if source.start_seconds is not None else ""
        console.print(f"  [{source.index}] [cyan]{escape(source.creator)}[/] · {escape(source.title)}{when}")
    console.print()
