"""Guards in front of the JSON decoders of ingest: a bound on nesting, and repeated keys.

A deeply nested but valid payload made a recursive decoder raise ``RecursionError``; a
repeated key (``"pressure_kpa": 5000, "pressure_kpa": 7.5``) was silently decoded as its last
value, so an out-of-range first value was never seen. Both are refused with a clear reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import accumulate
from operator import attrgetter
from typing import Any

# JSON strings (removed before the brackets are counted) and what is left of a JSON text once
# everything but its brackets is deleted
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NESTING_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


_INT_DIGITS = re.compile(r"integer string conversion: value has (\d+) digits")


def json_error(exc: ValueError | RecursionError) -> str:
    """What the standard JSON decoder found wrong, said for a device maker: an integer past
    Python's conversion limit is "a number of N digits", not advice to call
    ``sys.set_int_max_str_digits()``."""
    text = str(exc)
    digits = _INT_DIGITS.search(text)
    if digits:
        return f"a number of {digits.group(1)} digits (more than JSON numbers are read with)"
    return text[:200]


def too_deep(payload: bytes, limit: int) -> bool:
    """True when ``payload`` nests arrays and objects deeper than ``limit`` (in C-speed steps:
    strings out, brackets kept, a running sum)."""
    brackets = _JSON_STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    return max(accumulate(map(_NESTING_STEP.__getitem__, brackets))) > limit


def keys_add_up(payload: bytes, readings: Sequence[Any], outer_keys: int) -> bool:
    """No object of ``payload`` named a key twice, as far as a cheap count can tell.

    Decoders keep the last value of a repeated key silently. Each key of the decoded readings
    (three per reading, plus its metrics) ends with ``":`` in the payload, as every JSON
    writer puts it; a count that differs (a repeated key, a space before a colon, ``\\":``
    inside a string) sends the message the careful path, which looks at every key.
    """
    if len(readings) == 1:  # a single-reading message: the sum below costs more than its use
        keys = outer_keys + 3 + len(readings[0].metrics)
    else:
        keys = outer_keys + 3 * len(readings) + sum(map(len, map(_METRICS_OF, readings)))
    return payload.count(b'":') == keys


_METRICS_OF = attrgetter("metrics")


class Ambiguous(dict[str, Any]):
    """A JSON object that named a key more than once: which value was meant is unknown."""

    repeated: str = ""


def object_or_ambiguous(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s object hook: the object, marked ``Ambiguous`` when a key repeats."""
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    seen: set[str] = set()
    ambiguous = Ambiguous(found)
    ambiguous.repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return ambiguous
