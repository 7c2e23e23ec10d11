"""`lorechat worker`: runs ingest jobs' workflows and activities from Temporal's task queue (`jobs.engine: temporal`).

Start any number, on any machines that reach Temporal, the Qdrant server (`index.kind: server`), the database and
the content paths. Each process loads the embedding model once and runs up to `jobs.concurrency` batches at once,
each embedding with `jobs.embedding_threads` threads (the model's ONNX session is set to that many intra-op
threads, so a worker uses about concurrency × threads cores). On SIGTERM (or Ctrl-C) it stops taking work, lets
each batch finish the chunks it is embedding and hand the rest back (another worker resumes it from there), and
exits within `jobs.shutdown_grace_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from backend.errors import LorechatError
from backend.settings import Settings, get_settings
from pipeline.terminal import safe

if TYPE_CHECKING:  # the command imports the model's stack only when it runs
    from pipeline.jobs.activities import Target

log = logging.getLogger("lorechat.worker")


def worker_settings(settings: Settings, *, concurrency: int | None, embedding_threads: int | None) -> Settings:
    """The settings a worker runs with: the command line's concurrency and threads, the model's threads pinned."""
    jobs = settings.jobs.model_copy(
        update={
            "concurrency": concurrency or settings.jobs.concurrency,
            "embedding_threads": embedding_threads or settings.jobs.embedding_threads,
        }
    )
    # A worker embeds documents only: no int8 twin for questions (another model session, loaded for nothing).
    embedding = settings.embedding.model_copy(update={"threads": jobs.embedding_threads, "quantized_queries": False})
    return settings.model_copy(update={"jobs": jobs, "embedding": embedding})


def build_target(settings: Settings) -> tuple[Target, object]:
    """This process's one model, store client and database engine; the store is retried briefly at start (several
    workers starting at once may race to create the collection)."""
    from backend.retrieval.embedder import get_embedder
    from backend.retrieval.search import Retriever
    from backend.retrieval.stores import open_store
    from pipeline.catalog_update import CatalogWriter
    from pipeline.jobs.activities import Target
    from pipeline.jobs.temporal_activities import LoopDatabase

    embedder = get_embedder(settings.embedding)
    for attempt in range(5):
        store = open_store(settings)
        try:
            retriever = Retriever(embedder=embedder, store=store, settings=settings.retrieval)
            break
        except LorechatError:
            store.close()
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    database = LoopDatabase(settings)
    chunking = settings.chunking
    target = Target(
        retriever=retriever, catalog=CatalogWriter(database, settings.data_dir), size_tokens=chunking.size_tokens,
        overlap_tokens=chunking.overlap_tokens, sentence_vectors=chunking.sentence_vectors,
    )  # fmt: skip
    return target, database


async def run_worker(settings: Settings, *, identity: str, ready: asyncio.Event | None = None) -> None:
    """Poll the task queue until SIGTERM / SIGINT, then shut down gracefully (batches handed back)."""
    from temporalio.worker import Worker

    from pipeline.jobs.client import connect
    from pipeline.jobs.temporal_activities import JobActivities, LoopDatabase
    from pipeline.jobs.workflows import ChannelJob, IngestJob

    jobs = settings.jobs
    client = await connect(settings)
    target, database = await asyncio.to_thread(build_target, settings)
    activities = JobActivities(settings, target, identity=identity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        with ThreadPoolExecutor(max_workers=jobs.concurrency, thread_name_prefix="lorechat-job") as executor:
            worker = Worker(
                client,
                task_queue=jobs.task_queue,
                workflows=[IngestJob, ChannelJob],
                activities=[
                    activities.plan,
                    activities.write_batch,
                    activities.prune,
                    activities.catalog,
                    activities.report,
                    activities.sync_channel,
                ],
                activity_executor=executor,
                max_concurrent_activities=jobs.concurrency,
                graceful_shutdown_timeout=timedelta(seconds=jobs.shutdown_grace_seconds),
                identity=identity,
            )
            async with worker:
                log.info(
                    "worker %s polling %s at %s (concurrency %d, %d embedding threads)",
                    identity, jobs.task_queue, jobs.temporal_address, jobs.concurrency, jobs.embedding_threads,
                )  # fmt: skip
                # Channel schedules in step with the channels table (a change made while Temporal was away lands).
                from pipeline.jobs.schedules import sync_schedules

                try:
                    await asyncio.to_thread(sync_schedules, settings)
                except Exception:  # never the reason a worker does not start: the next reconcile catches up
                    log.warning("channel schedules not reconciled", exc_info=True)
                print(f"lorechat worker {identity}: ready", file=sys.stderr, flush=True)
                if ready is not None:
                    ready.set()
                await stop.wait()
                log.info("worker %s stopping: batches in hand finish their chunks and are handed back", identity)
    finally:
        target.store.close()
        if isinstance(database, LoopDatabase):
            database.close()


@click.command()
@click.option(
    "--concurrency", type=click.IntRange(1, 64), default=None, help="Batches at once (default: jobs.concurrency)."
)
@click.option(
    "--embedding-threads",
    type=click.IntRange(1, 256),
    default=None,
    help="Threads each batch embeds with (default: jobs.embedding_threads).",
)
def worker(concurrency: int | None, embedding_threads: int | None) -> None:
    """Run ingest jobs (folder ingests, channel syncs) from Temporal: jobs.engine temporal, index.kind server.

    Start as many as you like, on any machines that reach Temporal, the Qdrant server, the database and the
    content. SIGTERM finishes the chunks in hand and hands the rest of each batch to another worker.
    """
    from backend.logging import configure_logging
    from pipeline.jobs.client import require_shared_index
    from pipeline.jobs.temporal_activities import worker_identity

    settings = worker_settings(get_settings(), concurrency=concurrency, embedding_threads=embedding_threads)
    configure_logging(settings.log_level)
    if settings.index.kind == "edge":
        require_shared_index(
            settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"engine": "temporal"})})
        )
    identity = worker_identity()
    click.echo(
        safe(f"lorechat worker {identity}: {settings.jobs.task_queue} at {settings.jobs.temporal_address}"), err=True
    )
    asyncio.run(run_worker(settings, identity=identity))
