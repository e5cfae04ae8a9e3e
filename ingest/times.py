"""Device times as µs since the Unix epoch: the one parser of RFC 3339 that the native v1
path (``ingest.pipeline``), payload profiles (``ingest.profiles``) and history import share,
and the readers of numeric times (epoch seconds, milliseconds, cycles) profiles use."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(when: datetime) -> int:
    """An aware datetime → µs since the Unix epoch (exact, no float)."""
    delta = when - UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_datetime(us: int) -> datetime:
    """The time of epoch microseconds ``us`` (0: the epoch)."""
    return datetime.fromtimestamp(us / 1e6, UTC) if us else UNIX_EPOCH


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


# epoch µs of anything from year 1 to 9999 fits; beyond that a reading is quarantined
MAX_ABS_US = 250_000_000_000 * 1_000_000


def as_number(value: Any) -> float | None:
    """A JSON number, or text that reads as one, as a float; None for anything else.

    Text is read as a decimal number written in ASCII, surrounding spaces allowed: Python's
    ``float`` also takes digit-group underscores (``1_000``) and the digits of every other
    script (full-width U+FF11, Arabic-Indic U+0661), which no device, spreadsheet or
    database writes as a number and which are far more likely a mistake (or another field)
    than a reading; those are not numbers here (``number_text_problem`` says why)."""
    t = type(value)
    if t is float or t is int:
        return float(value)
    if t is str:
        text = value.strip()
        if not text.isascii() or "_" in text:
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


def number_text_problem(value: object) -> str:
    """Why text that ``float`` would read is not a number here ("" when that is not why)."""
    if type(value) is not str:
        return ""
    text = value.strip()
    if "_" in text:
        return " (digit-group underscores are not read)"
    if not text.isascii() and any(c.isdigit() for c in text):
        return " (only ASCII digits 0-9 are read)"
    return ""


def scaled_us(factor: float, base: int = 0) -> Callable[[Any], int | None]:
    """A reader of numeric times (``base`` + value * ``factor`` µs); None where not a finite
    number or beyond what epoch µs of years 1-9999 hold."""

    def read(value: Any) -> int | None:
        number = as_number(value)
        if number is None or not math.isfinite(number):
            return None
        us = base + round(number * factor)
        return us if abs(us) < MAX_ABS_US else None

    return read


def auto_us(value: Any) -> int | None:
    """An integer as epoch ms, text as RFC 3339 (the ``auto`` time format)."""
    if type(value) is int:
        return value * 1000 if abs(value) < MAX_ABS_US // 1000 else None
    return rfc3339_us(value)


def span_words(span: timedelta) -> str:
    """A limit as people say it: ``30 days``, ``10 min``, ``1 h 30 min``, ``45 s``."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86_400)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts += [f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min"), (secs, "s")) if n]
    return " ".join(parts) or "0 s"
