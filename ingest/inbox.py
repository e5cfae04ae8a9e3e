"""The bounded hand-off between the MQTT network thread and the ingest writers, and what
acknowledging a message needs."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

import paho.mqtt.client as mqtt

from ingest.mqtt_client import BufferedClient
from ingest.schemas import RawMessage


class AckToken(NamedTuple):
    """What acknowledging a message needs: its packet id, QoS, and the connection it came on."""

    mid: int
    qos: int
    connection: int


def send_acks(client: mqtt.Client, batch: Iterable[RawMessage], connection: int) -> int:
    """Acknowledge the committed ``batch`` (QoS 1: all PUBACKs in one write when the client
    can); return how many came on another connection than ``connection`` (the current one,
    -1 when disconnected) and are left for the broker to redeliver."""
    skipped = 0
    mids: list[int] = []
    many = isinstance(client, BufferedClient)
    for msg in batch:
        token = msg.ack_token
        if not isinstance(token, AckToken) or token.qos == 0:
            continue
        if token.connection != connection:
            skipped += 1
        elif many and token.qos == 1:
            mids.append(token.mid)
        else:
            client.ack(token.mid, token.qos)
    if mids:
        assert isinstance(client, BufferedClient)
        client.ack_many(mids)
    return skipped


GATHER_POLL_S = 0.005


class Inbox:
    """The bounded hand-off from the network thread to the writer.

    Cheap per message: a deque append (atomic in CPython) and a flag check; locks are taken
    only to wake a sleeping writer or to make the network thread wait while the inbox is full.
    """

    def __init__(self, maxsize: int, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._items: deque[RawMessage] = deque()
        self._nonempty = threading.Event()
        self._space = threading.Condition()
        # each counter is written by one thread only (no lock needed); bytes held = in - out
        self._bytes_in = 0
        self._bytes_out = 0

    def qsize(self) -> int:
        """Messages waiting for the writer."""
        return len(self._items)

    def _full(self) -> bool:
        return (
            len(self._items) >= self.maxsize or self._bytes_in - self._bytes_out >= self.max_bytes
        )

    def put(self, item: RawMessage, timeout: float) -> bool:
        """Add ``item``, waiting up to ``timeout`` for room; False when still full."""
        if self._full():
            with self._space:
                if not self._space.wait_for(lambda: not self._full(), timeout):
                    return False
        self._bytes_in += len(item.payload)
        self._items.append(item)
        if not self._nonempty.is_set():
            self._nonempty.set()
        return True

    def take(
        self,
        max_items: int,
        max_bytes: int,
        first_wait_s: float,
        gather_s: float,
        idle_s: float | None = None,
        *,
        min_bytes: int | None = None,
        share: int = 1,
    ) -> list[RawMessage]:
        """A batch: wait up to ``first_wait_s`` for a first message, then gather more for up
        to ``gather_s`` until ``max_items`` or ``max_bytes``; ``idle_s``: or until no message
        came for that long (the stream paused or ended: waiting out ``gather_s`` would only
        delay the batch).

        ``min_bytes``: an adaptive bound instead of ``max_bytes``: ``1/share`` of what the
        inbox holds when the batch starts (``share``: the writers taking turns), at least
        ``min_bytes`` and at most ``max_bytes`` (all of it when the rest would be less than
        ``min_bytes``), and ``min_bytes`` gathered when less waits. A burst's first batches are
        then small, so the database starts early, a backlog's are the full size, and its last
        ones shrink, so the pipeline drains quickly (docs/scaling.md)."""
        batch: list[RawMessage] = []
        size = taken_bytes = 0
        deadline: float | None = None
        wait = first_wait_s
        grew_at = 0.0
        bound = max_bytes
        while True:
            items = self._items
            before = len(batch)
            if min_bytes is not None and not batch and items:
                held = self._bytes_in - self._bytes_out
                if held < min_bytes:
                    # no backlog (the writers keep up): gather a least batch, or until the
                    # time bounds, as fixed batches do; taking only what waits now made many
                    # tiny batches from a steady stream, each paying a batch's fixed cost
                    bound = min(max_bytes, min_bytes)
                else:
                    bound = min(max_bytes, max(min_bytes, held // max(share, 1)))
                    if held - bound < min_bytes:  # no remainder smaller than a least batch
                        bound = min(max_bytes, held)
            while items and len(batch) < max_items and size < bound:
                item = items.popleft()
                batch.append(item)
                size += len(item.payload)
            if batch:
                self._bytes_out += size - taken_bytes
                taken_bytes = size
                with self._space:
                    self._space.notify_all()
                if len(batch) >= max_items or size >= bound:
                    return batch
                now = time.monotonic()
                if deadline is None:
                    deadline = now + gather_s
                if len(batch) > before:  # something came since the last look
                    grew_at = now
                elif idle_s is not None and now - grew_at >= idle_s:
                    return batch
                wait = deadline - now
            if wait <= 0:
                return batch
            if batch:
                # gathering: poll every few ms rather than have the network thread wake us
                # for each message (an Event.set per message showed in the profile)
                time.sleep(min(wait, GATHER_POLL_S))
                continue
            # clear, then look again: a message appended after the look sets the flag
            self._nonempty.clear()
            if not items and not self._nonempty.wait(wait):
                return batch
