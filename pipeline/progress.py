"""A rich progress bar on stderr for long ingests: files parsed, chunks embedded, chunks per second."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar


class Progress:
    """What a long ingest reports as it goes; silent by default (tests, library use)."""

    def start(self, *, files: int) -> None: ...
    def file_done(self, source: str) -> None: ...
    def chunks_done(self, count: int) -> None: ...
    def finish(self) -> None: ...


class RichProgress(Progress):
    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bar = Bar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not enabled,
        )
        self._files: TaskID | None = None
        self._chunks: TaskID | None = None

    def start(self, *, files: int) -> None:
        self._bar.start()
        self._files = self._bar.add_task("files ", total=files, rate="")
        # The chunk total is unknown until files are parsed and compared with the index.
        self._chunks = self._bar.add_task("chunks", total=None, rate="")

    def file_done(self, source: str) -> None:
        if self._files is not None:
            self._bar.advance(self._files)

    def chunks_done(self, count: int) -> None:
        if self._chunks is None:
            return
        self._bar.advance(self._chunks, count)
        task = self._bar.tasks[self._chunks]
        if task.elapsed:
            self._bar.update(self._chunks, total=task.completed, rate=f"{task.completed / task.elapsed:.1f} chunks/s")

    def finish(self) -> None:
        self._bar.stop()
