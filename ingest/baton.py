"""The ingest writers' baton: one writer at a time prepares a batch (``ingest.worker``)."""

from __future__ import annotations

import threading


class Baton:
    """A lock held from a batch's collection until its writes start (``hand_on``, once)."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock, self._held = lock, False

    def __enter__(self) -> Baton:
        self._lock.acquire()
        self._held = True
        return self

    def hand_on(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()

    def __exit__(self, *exc: object) -> None:
        self.hand_on()
