"""The fast path of JSON payload profiles: a message decoded by msgspec (in C) straight into
typed records, then into readings, without a dictionary per record.

It covers the usual gateway format: the batch array (if any), the asset, the time and every
metric field are keys of one level. A message it cannot read whole — a field missing or of
another type (a number written as a string, ``null``), an empty asset id, an unreadable time,
a record with none of the metrics, too many readings, a repeated field name in the profile,
not JSON at all — makes it answer None, and the message goes the careful path
(``CompiledProfile.read_json``), which says what is wrong with which reading and keeps the
good ones. Both paths give the same readings for the messages the fast one reads
(``tests/test_ingest_profiles.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ingest.profiles import CompiledProfile, _flat_key

# epoch milliseconds whose µs a float holds exactly: the careful path's arithmetic and plain
# integer arithmetic agree below this
_EXACT_MS = 2**53 // 1000

# the Python type each time format's fast path accepts (anything else: the careful path)
_TIME_TYPES: dict[str, Any] = {
    "epoch_ms": int | float,
    "epoch_s": int | float,
    "cycle": int | float,
    "auto": int | str,
    "rfc3339": str,
}

# (asset ref, time in epoch ms, {metric: value}) → what the pipeline validates (decode.Reading)
MakeReading = Callable[[str, int, dict[str, Any]], Any]


class FastJsonReader:
    """Reads the messages of one JSON profile whose fields are one-level keys."""

    def __init__(self, profile: CompiledProfile, decoder: msgspec.json.Decoder[Any]) -> None:
        self.decoder = decoder
        self.batched = profile._batch is not None
        self.records = _records_reader(profile)

    def read(self, payload: bytes, max_readings: int, make: MakeReading) -> list[Any] | None:
        """Every reading of the message, or None: the careful path reads it."""
        try:
            decoded = self.decoder.decode(payload)
        except (ValueError, RecursionError):  # msgspec.DecodeError, not UTF-8, too deep
            return None
        records = decoded.records if self.batched else [decoded]
        if len(records) > max_readings:
            return None
        return self.records(records, make)


def _records_reader(profile: CompiledProfile) -> Callable[[list[Any], MakeReading], Any]:
    """The loop over a message's decoded records, written out for this profile.

    Per record it is a few attribute reads, the conversion and one reading: as a generic loop
    (an ``attrgetter`` of every field, a loop over the conversions) it cost several times the
    decode itself, measured. Only the loop's shape comes from the profile (how many metrics,
    which are converted, whether there is a prefix, epoch ms); names, factors and the prefix
    are bound as values, never written into the source.
    """
    doc = profile.doc
    assert doc.time is not None
    env: dict[str, Any] = {
        "read_time": profile.read_time,
        "unset": msgspec.UNSET,
        "EXACT_MS": _EXACT_MS,
        "PREFIX": profile.prefix,
    }
    lines = [
        "def read_records(records, make):",
        "    out = []",
        "    append = out.append",
        "    for r in records:",
        "        a = r.a",
        "        if not a:",
        "            return None",
        "        t = r.t",
    ]
    if doc.time.format == "epoch_ms":  # integer ms: the careful path's arithmetic, exactly
        lines += ["        if type(t) is int and -EXACT_MS < t < EXACT_MS:", "            ms = t"]
        lines += ["        else:", "            us = read_time(t)"]
    else:
        lines += ["        if True:", "            us = read_time(t)"]
    lines += ["            if us is None:", "                return None"]
    lines += ["            ms = us // 1000"]
    lines += ["        m = {}"]
    for i, (_, conv) in enumerate(profile._metrics):
        env[f"NAME{i}"], env[f"SCALE{i}"], env[f"OFFSET{i}"] = conv.name, conv.scale, conv.offset
        value = f"v{i}" if conv.identity else f"v{i} * SCALE{i} + OFFSET{i}"
        lines += [
            f"        v{i} = r.m{i}",
            f"        if v{i} is not unset:",
            f"            m[NAME{i}] = {value}",
        ]
    lines += ["        if not m:", "            return None"]
    lines += [f"        append(make({'PREFIX + a' if profile.prefix else 'a'}, ms, m))"]
    lines += ["    return out"]
    exec("\n".join(lines), env)  # the source above holds no text from the profile
    reader: Callable[[list[Any], MakeReading], Any] = env["read_records"]
    return reader


def fast_json_reader(profile: CompiledProfile) -> FastJsonReader | None:
    """The fast reader of a JSON profile; None when its fields are not all one-level keys."""
    doc = profile.doc
    if doc.format != "json" or doc.time is None:
        return None
    found = [profile._asset_key, profile._time_key] + [_flat_key(p) for p, _ in profile._metrics]
    keys = [k for k in found if k is not None]
    if len(keys) != len(found) or len(set(keys)) != len(keys):
        return None  # a deeper path, or one field read twice
    batch_key = _flat_key(profile._batch) if profile._batch is not None else None
    if profile._batch is not None and batch_key is None:
        return None
    number = int | float
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("a", str),
        ("t", _TIME_TYPES[doc.time.format]),
    ]
    fields += [(f"m{i}", number | msgspec.UnsetType, msgspec.UNSET) for i in range(len(keys) - 2)]
    names = ["a", "t"] + [f"m{i}" for i in range(len(keys) - 2)]
    record = msgspec.defstruct(
        "ProfileRecord", fields, rename=dict(zip(names, keys, strict=True)), gc=False
    )
    if batch_key is None:
        return FastJsonReader(profile, msgspec.json.Decoder(record))
    records: Any = list[record]  # type: ignore[valid-type]  # a type made at run time
    batch = msgspec.defstruct(
        "ProfileBatch", [("records", records)], rename={"records": batch_key}, gc=False
    )
    return FastJsonReader(profile, msgspec.json.Decoder(batch))
