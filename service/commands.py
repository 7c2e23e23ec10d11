"""Service commands of the `lorechat` group: `serve` runs the API, `ask` chats in the terminal, `doctor` checks
the local model. They import the web stack inside the commands, so curator commands stay light to start."""

from __future__ import annotations

from functools import partial

import click


@click.command()
@click.option("--host", default=None, help="Interface to bind (default from settings: 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default from settings: 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the chat API, the widget and the demo knowledge site.

    One worker: the embedded index (Qdrant Edge) belongs to a single process.
    """
    from backend.app import create_app
    from backend.logging import configure_logging
    from backend.malloc_arenas import limit_malloc_arenas
    from backend.settings import get_settings
    from backend.stream.server import Server, uvicorn_config
    from pipeline.channels.sync import ChannelSync
    from pipeline.jobs.client import Jobs, ingest_runner, require_shared_index, uses_temporal

    settings = get_settings()
    # jobs.engine temporal with the embedded Edge index cannot work (the workers could not write it): refused here.
    require_shared_index(settings)
    configure_logging(settings.log_level)
    limit_malloc_arenas(settings.server.malloc_arenas)  # before the app starts any thread
    # The composition root: the one place that joins the pipeline to the service (admin ingest over HTTP, channel
    # syncs over HTTP and on their schedule, the jobs table in /admin).
    config = uvicorn_config(
        create_app(
            settings,
            ingest=ingest_runner(settings),
            channels=partial(ChannelSync.for_service, settings),
            jobs=Jobs(settings) if uses_temporal(settings) else None,
        ),
        settings.server,
        host=host or settings.server.host,
        port=port or settings.server.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    # uvicorn's, telling open streams about SIGTERM at once (F12) and freezing the startup heap once it is built.
    server = Server(config, freeze_startup_heap=settings.server.freeze_startup_heap)
    server.run()
    if not server.started:
        raise SystemExit(3)  # as uvicorn.run: the app failed to start (the log says why)


@click.command()
@click.argument("question")
@click.option("--creator", metavar="SLUG", help="Ask one creator.")
@click.option(
    "--personality",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="0 neutral voice … 1 the creator's own voice.",
)
@click.option("--conversation", "conversation_id", metavar="ID", help="Continue a conversation.")
def ask(question: str, creator: str | None, personality: float, conversation_id: str | None) -> None:
    """Ask a question in the terminal: sources first, then the streamed answer."""
    import anyio

    from backend.ask import ask_in_terminal
    from backend.settings import get_settings

    anyio.run(
        lambda: ask_in_terminal(
            get_settings(),
            question=question,
            creator=creator,
            personality_weight=personality,
            conversation_id=conversation_id,
        )
    )


@click.command()
@click.option("--quiet", is_flag=True, help="Print only the one-line verdict.")
def doctor(quiet: bool) -> None:
    """Prove the local model works on this CPU: start it in its own process, decode real prompts.

    Prints one line: the prompt-reading speed and the prompt that fits the first-token target, or why
    the `local` tier is disabled here (the service still answers with its other tiers). Exits 1 when a
    configured local model cannot run.
    """
    import anyio

    from backend.doctor import check_local_models
    from backend.logging import configure_logging
    from backend.settings import get_settings
    from pipeline.terminal import safe

    settings = get_settings()
    configure_logging("ERROR" if quiet else settings.log_level)
    lines, ok = anyio.run(check_local_models, settings)
    for line in lines:
        click.echo(safe(line), err=not ok)  # a model's name or error text, printed inert (C1)
    raise SystemExit(0 if ok else 1)
