"""Device times as µs since the Unix epoch: the one parser of RFC 3339 that the native v1
path (``ingest.pipeline``), payload profiles (``ingest.profiles``) and history import share."""

from __future__ import annotations

from datetime import UTC, datetime

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(when: datetime) -> int:
    """An aware datetime → µs since the Unix epoch (exact, no float)."""
    delta = when - UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def rfc3339_us(value: object) -> int | None:
    """RFC 3339 text with an offset → epoch µs; None for anything else (no offset, a NUL,
    which ``fromisoformat`` would let through, or not text at all)."""
    if type(value) is not str or "\x00" in value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return epoch_us(parsed)


def parse_timestamp_us(ts: object) -> int | None:
    """The v1 ``ts``: RFC 3339 with an offset, or integer epoch milliseconds → epoch µs."""
    if type(ts) is int:
        return ts * 1000
    return rfc3339_us(ts)
