"""The service's copy of the SQL catalog: cached in memory, re-read when another process changed it.

An ingest anywhere (the CLI on another host, the admin route of another replica) bumps the catalog's version
in the shared database. Requests ask `current()`, which checks that version at most every CHECK_SECONDS with
one tiny query and re-reads the whole catalog only when it moved: the request path stays cheap, and no
session outlives the check (never one across a stream).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from backend.catalog import Catalog, legacy_catalog_path
from backend.errors import LorechatError
from backend.storage import catalog_store
from backend.storage.repository import Sessions

log = logging.getLogger(__name__)


class SharedCatalog:
    """`catalog` stays the same object: the chat service and the site hold it, and a reload swaps its
    contents in place."""

    CHECK_SECONDS = 1.0

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.catalog = Catalog()
        self._version: int | None = None
        self._checked = float("-inf")
        self._checking = False

    @property
    def version(self) -> int | None:
        """The catalog version this copy was read at (an ingest anywhere bumps it, after its index writes)."""
        return self._version

    async def current(self) -> Catalog:
        # One request checks; the others meanwhile get the cached copy instead of queueing behind it.
        if not self._checking and time.monotonic() - self._checked >= self.CHECK_SECONDS:
            await self.refresh()
        return self.catalog

    async def refresh(self, *, force: bool = False) -> None:
        self._checked = time.monotonic()
        self._checking = True
        try:
            if not force and await catalog_store.catalog_version(self.sessions) == self._version:
                return
            version, loaded = await catalog_store.load_catalog(self.sessions)
        except LorechatError as exc:
            # The database is unavailable: keep serving the last catalog read; the next check tries again.
            log.warning("cannot check the catalog, keeping the copy in memory: %s", exc.message)
            return
        finally:
            self._checking = False
        self.catalog.creators = loaded.creators
        self._version = version


async def adopt_legacy_catalog(sessions: Sessions, data_dir: Path) -> bool:
    """Import <data_dir>/catalog.json of an earlier release into a never-written SQL catalog, once, so an
    existing install keeps its creators; True when it did. Called by the service and before every ingest's
    catalog write (whichever comes first)."""
    path = legacy_catalog_path(data_dir)
    if not path.is_file() or await catalog_store.catalog_version(sessions) != 0:
        return False
    try:
        legacy = Catalog.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("cannot read the legacy catalog %s, not importing it: %s", path, exc)
        return False
    if not await catalog_store.import_if_never_written(sessions, legacy):
        return False
    log.warning("imported %d creators from the legacy %s into the database catalog", len(legacy.creators), path)
    return True
