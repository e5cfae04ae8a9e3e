"""The live feed: one LISTEN connection per process fans notifications out to browsers.

A thread LISTENs on ``fleetcare_predictions`` (payload: asset id) and ``fleetcare_events``
(payload: outbox event id), gathers what arrives within a short window, reads the rows those
ids name in one query each, and hands every subscriber the messages of its own scope: a
customer's browser only ever receives its own assets and events; the operator's receives all.
Subscribers are asyncio queues; the thread never blocks on a slow browser (a full queue drops
the message and tells the browser to reload its panels instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg

from api.dashboard import repository as repo
from fleetcare.db import connect

log = logging.getLogger(__name__)

CHANNELS = ("fleetcare_predictions", "fleetcare_events")
APPLICATION_NAME = "fleetcare-dashboard-live"  # how the listener shows in pg_stat_activity
BATCH_WINDOW_S = 0.2
QUEUE_SIZE = 500
MAX_MESSAGES_PER_BATCH = 200


@dataclass(frozen=True)
class LiveMessage:
    """One server-sent event: its name and JSON data."""

    event: str
    data: str

    def encode(self) -> str:
        """The text/event-stream form of this message."""
        return f"event: {self.event}\ndata: {self.data}\n\n"


@dataclass(eq=False)  # identity, so that subscriptions can live in a set
class Subscription:
    """A browser's queue and the customer it is confined to (None: the operator)."""

    scope: int | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[LiveMessage] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    dropped: int = 0

    def offer(self, message: LiveMessage) -> None:
        """Queue ``message`` (called on the event loop); on overflow ask for a resync."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1


class LiveHub:
    """Listens for notifications and fans them out to subscribers by scope."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()
        self._listened_before = False
        self.batches_published = 0

    def start(self) -> None:
        """Start the listener thread (idempotent)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dashboard-live", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the listener thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def subscribe(self, scope: int | None) -> Subscription:
        """A new subscription on the running event loop."""
        sub = Subscription(scope=scope, loop=asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(sub)
        self.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription (its browser went away)."""
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        """How many browsers are listening."""
        with self._lock:
            return len(self._subscribers)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.OperationalError as exc:
                self.listening.clear()
                log.warning("live feed lost its database connection: %s; retrying", exc)
                self._stop.wait(2.0)
            except Exception:  # keep the feed alive whatever one batch does
                self.listening.clear()
                log.exception("live feed failed; restarting")
                self._stop.wait(2.0)

    def _listen(self) -> None:
        with connect(self._database_url, autocommit=True, actor="system:live") as conn:
            conn.execute("SELECT set_config('application_name', %s, false)", (APPLICATION_NAME,))
            for channel in CHANNELS:
                conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
            if self._listened_before:
                # notifications sent while we were away are lost: browsers reload their panels
                self._broadcast(resync_message(0))
            self._listened_before = True
            self.listening.set()
            while not self._stop.is_set():
                first = list(conn.notifies(timeout=1.0, stop_after=1))
                if not first:
                    continue
                # gather whatever else arrives in a short window: one query per batch
                batch = first + list(conn.notifies(timeout=BATCH_WINDOW_S))
                self._publish(conn, batch)

    def _publish(self, conn: psycopg.Connection[Any], batch: list[psycopg.Notify]) -> None:
        asset_ids = sorted(
            {int(n.payload) for n in batch if n.channel == CHANNELS[0] and n.payload.isdigit()}
        )
        event_ids = sorted(
            {int(n.payload) for n in batch if n.channel == CHANNELS[1] and n.payload.isdigit()}
        )
        messages: list[tuple[int | None, LiveMessage]] = []
        if asset_ids:
            for row in repo.live_assets(conn, asset_ids):
                messages.append((row.customer_id, LiveMessage("prediction", row.model_dump_json())))
        if event_ids:
            for event in repo.live_events(conn, event_ids):
                messages.append((event.customer_id, LiveMessage("event", event.model_dump_json())))
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            mine = [m for owner, m in messages if sub.scope is None or sub.scope == owner]
            if len(mine) > MAX_MESSAGES_PER_BATCH:
                # a scoring run of the whole fleet: one "reload your panels" beats 10,000 lines
                mine = [resync_message(len(mine))]
            if mine:
                with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                    for message in mine:
                        sub.loop.call_soon_threadsafe(sub.offer, message)
        self.batches_published += 1

    def _broadcast(self, message: LiveMessage) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub.offer, message)


def resync_message(dropped: int) -> LiveMessage:
    """Tells a browser it missed messages and should reload its live panels."""
    return LiveMessage("resync", json.dumps({"dropped": dropped}))
