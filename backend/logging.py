"""Logging set-up for the service: one line per record on stderr (with its trace id), quiet third-party loggers."""

from __future__ import annotations

import logging

from backend.tracing import TraceIds


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        # `trace=<id>` ends the lines logged inside a traced turn (backend/tracing.py), the id `done` carries.
        format="%(asctime)s %(levelname)s %(name)s: %(message)s%(trace)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(TraceIds())
    for noisy in ("httpx", "sentence_transformers", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
