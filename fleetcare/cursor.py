"""Opaque keyset cursors for lists ordered by more than an id: the sort key of the last row
shown, as base64url JSON. A client passes back what it was given (``next_after``); it never
builds one. A cursor that does not decode to the expected shape is a clear 422."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleetcare.errors import Invalid

MAX_CURSOR = 1000  # characters


def encode_cursor(values: list[Any]) -> str:
    """The cursor after a row whose sort key is ``values`` (str, int, float, datetime, None)."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    text = json.dumps(plain, separators=(",", ":"), allow_nan=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _typed(value: Any, kind: str) -> Any:
    """``value`` as ``kind`` (int, float, str or time); ValueError when it is not."""
    if value is None:
        return None
    if kind == "int" and type(value) is int and -(2**63) <= value < 2**63:
        return value
    if kind == "float" and type(value) in (int, float) and math.isfinite(value):
        return float(value)
    if kind == "str" and type(value) is str and "\x00" not in value:
        return value
    if kind == "time" and type(value) is str:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            return parsed
    raise ValueError(kind)


def decode_cursor(
    cursor: str, kinds: Sequence[str], *, where: str = "after", nullable: bool = True
) -> list[Any]:
    """The sort key a cursor holds, each value of its ``kinds`` (int, float, str, time, or
    null when ``nullable``); Invalid (code ``bad_cursor``) for anything else."""
    bad = Invalid(f"{where}: not a cursor of this list (pass back a next_after)", code="bad_cursor")
    if len(cursor) > MAX_CURSOR:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw.decode("utf-8"))
        if type(values) is not list or len(values) != len(kinds):
            raise ValueError("shape")
        if not nullable and None in values:
            raise ValueError("null")
        return [_typed(v, k) for v, k in zip(values, kinds, strict=True)]
    except (binascii.Error, ValueError, OverflowError):
        raise bad from None
