"""Which subscription an ingestor holds, and what the broker did to it across reconnects.

Two modes: the ingestor's own persistent session with a plain subscription (the default; a
broker that persists sessions, as Mosquitto does, keeps it and queues for it across its
restarts) or the MQTT 5 shared subscription ``$share/ingest/...`` (several ingestors split
the load; only on a broker that keeps shared subscriptions across restarts: Mosquitto 2.0
forgets them and answers devices PUBACK 0x10 "no matching subscribers" — a success code — and
drops the message until the ingestor has subscribed again).

``SessionWatch`` turns the CONNACK's session-present flag and the broker's uptime into the
alerts an operator needs: a lost session (what the broker had queued for us is gone) and a
broker restart that left a shared subscription missing for a while.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ingest.sparkplug import subscription_filters

log = logging.getLogger(__name__)

SHARE_GROUP = "ingest"
BROKER_UPTIME_TOPIC = "$SYS/broker/uptime"


def telemetry_filter(topic_root: str, shared: bool) -> str:
    """The topic filter an ingestor subscribes with in the given mode."""
    return shared_filter(f"{topic_root}/+/telemetry", shared)


def position_filter(topic_root: str, shared: bool) -> str:
    """The filter of devices' position topics (``ingest.positions``), shared like telemetry."""
    return shared_filter(f"{topic_root}/+/position", shared)


def shared_filter(topic_filter: str, shared: bool) -> str:
    """``topic_filter`` as the ingestors' shared subscription, or as it is."""
    return f"$share/{SHARE_GROUP}/{topic_filter}" if shared else topic_filter


def profile_filters(topics: list[str], sparkplug_groups: list[str], shared: bool) -> list[str]:
    """What an ingestor reads besides the native telemetry: the topics of payload profiles
    (shared like telemetry) and the births, data and deaths of the Sparkplug B groups that
    profiles map. Sparkplug is read on a plain subscription even in shared mode: a node's
    aliases and sequence numbers are a session that one host must see whole, in order."""
    out = [shared_filter(f, shared) for f in topics]
    for group in sparkplug_groups:
        out += subscription_filters(group)
    return out


def parse_uptime(payload: bytes) -> float | None:
    """Mosquitto's ``$SYS/broker/uptime`` (``"123 seconds"``) in seconds; None if not that."""
    head = payload.split(b" ", 1)[0]
    try:
        return float(head)
    except ValueError:
        return None


@dataclass
class Alert:
    """Something about the subscription an operator must hear of."""

    kind: str  # "session_lost" | "unsubscribed_window"
    detail: str
    unsubscribed_s: float = 0.0


@dataclass
class SessionWatch:
    """Session-present flags and broker restarts over one ingestor's connections.

    Broker restarts are seen from ``$SYS/broker/uptime``: the broker started after our
    previous connection was made means it restarted in between. The uptime is published every
    ``sys_interval``, so the start it gives is late by up to that much: a window is a lower
    bound, and a broker that started within ``sys_interval`` before our previous connection
    could be taken for a restart.
    """

    shared: bool
    connections: int = 0
    connack_at: float | None = None  # wall time of this connection's CONNACK
    previous_connack_at: float | None = None
    subscribed_at: float | None = None
    disconnected_at: float | None = None  # when the previous connection was lost
    session_present: bool = False
    restart_checked: bool = True

    def on_connack(self, session_present: bool, now: float) -> Alert | None:
        """A new connection: a session the broker should have kept and did not is an alert."""
        self.connections += 1
        self.previous_connack_at, self.connack_at = self.connack_at, now
        self.subscribed_at = None
        self.session_present = session_present
        self.restart_checked = False
        if self.connections > 1 and not session_present:
            return Alert(
                "session_lost",
                "the broker did not keep this ingestor's session (restarted without "
                "persistence, or the session expired): what it had queued for us is gone; "
                "subscription made again",
            )
        return None

    def on_disconnect(self, now: float) -> None:
        """The connection was lost (the broker may be restarting)."""
        self.disconnected_at = now

    def on_subscribed(self, now: float) -> None:
        """The broker granted the telemetry subscription on this connection."""
        if self.subscribed_at is None:
            self.subscribed_at = now

    def on_uptime(self, uptime_s: float, now: float) -> tuple[bool, Alert | None]:
        """The broker's uptime, first seen on this connection: (restarted, alert)."""
        if self.restart_checked or self.previous_connack_at is None:
            self.restart_checked = True
            return False, None
        self.restart_checked = True
        started_at = now - uptime_s
        if started_at <= self.previous_connack_at:
            return False, None
        if not self.shared:
            if self.session_present:
                log.info("the broker restarted; our session and subscription were kept")
            return True, None
        subscribed = self.subscribed_at or now
        # The broker started at most ``uptime`` ago (the published uptime lags and is whole
        # seconds) and after our previous connection was lost: the window lies in between.
        shortest = max(0.0, subscribed - started_at)
        longest = max(shortest, subscribed - (self.disconnected_at or started_at))
        return True, Alert(
            "unsubscribed_window",
            f"the broker restarted and our shared subscription was made again "
            f"{shortest:.1f} to {longest:.1f} s after it started: a broker that does not keep "
            "shared subscriptions (Mosquitto 2.0) answered devices 'no matching subscribers' "
            "and dropped what they published meanwhile; use the per-ingestor session on such "
            "a broker",
            longest,
        )
