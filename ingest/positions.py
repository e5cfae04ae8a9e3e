"""Carriers' positions from telemetry: a carrier's devices (or a gateway on it) report where
it is, and ingest stores each position once per (carrier, time), moves the carrier's latest
position forward, and quarantines what it cannot take with a reason.

A position message comes on the device's own position topic, ``<root>/<device>/position``, in
the native format::

    {"carrier": "D-AIBA", "ts": "2027-03-07T07:02:00Z", "latitude": 48.35, "longitude": 11.79,
     "station": "MUC"}
    {"positions": [{...}, {...}]}

(``latitude`` and ``longitude`` together, ``station`` a site ref of the customer, either or
both), or in a payload profile with ``carries: positions`` that the device speaks, on any of
its topics. The carrier must be one of the device's customer; the pipeline
(``ingest.pipeline.store_messages``) routes these messages here and runs this in the batch's
transaction. No MQTT here; the SQL is in ``fleet.position_repository``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import Connection

from fleet import position_repository as repo
from ingest.decode import Decoded, Quarantine
from ingest.json_guard import Ambiguous, json_error, object_or_ambiguous, too_deep
from ingest.profile_service import LoadedProfiles
from ingest.profiles import ProfileDocument, time_reader
from ingest.repository import DeviceKey
from ingest.schemas import BatchResult, IngestLimits, QuarantineReason, RawMessage
from ingest.times import UNIX_EPOCH, parse_timestamp_us, span_words

Conn = Connection[Any]
R = QuarantineReason
Problem = tuple[QuarantineReason, str]
_MISSING = object()
_NATIVE_KEYS = frozenset({"carrier", "ts", "latitude", "longitude", "station"})


def position_ref_from_topic(topic: str, topic_root: str) -> str | None:
    """``<root>/<device>/position`` → device reference; None for any other topic."""
    if not topic.endswith("/position") or not topic.startswith(topic_root + "/"):
        return None
    middle = topic[len(topic_root) + 1 : -len("/position")]
    return middle if middle and "/" not in middle else None


@dataclass(frozen=True, slots=True)
class Position:
    """A position as read from a message, before its carrier and station are looked up."""

    carrier: str
    ts_us: int
    latitude: float | None
    longitude: float | None
    station: str | None
    where: str  # how a problem names it: position, positions[3], fixes[3]


def _coordinates(where: str, lat: Any, lon: Any) -> Problem | None:
    if (lat is None) != (lon is None):
        return R.BAD_STRUCTURE, f"{where}: latitude and longitude come together"
    for name, value, bound in (("latitude", lat, 90.0), ("longitude", lon, 180.0)):
        if value is None:
            continue
        if type(value) is not float and type(value) is not int:
            return R.NOT_A_NUMBER, f"{where}: {name} = {str(value)[:64]!r} is not a number"
        if not math.isfinite(value):
            return R.NOT_FINITE, f"{where}: {name} = {value}"
        if not -bound <= value <= bound:
            return R.OUT_OF_BOUNDS, f"{where}: {name} = {value} outside [{-bound:g}, {bound:g}]"
    return None


def _position(
    where: str, carrier: Any, ts_us: int | None, raw_ts: Any, lat: Any, lon: Any, station: Any
) -> Position | Problem:
    """One position checked for its shape (the time window and references come later)."""
    if type(carrier) is not str or not carrier:
        return R.BAD_STRUCTURE, f"{where}: no carrier ref (string)"
    if ts_us is None:
        return R.BAD_TIMESTAMP, f"{where}: time {str(raw_ts)[:64]!r} is not readable"
    if station is not None and (type(station) is not str or not station):
        return R.BAD_STRUCTURE, f"{where}: station must be a site ref (string)"
    problem = _coordinates(where, lat, lon)
    if problem is not None:
        return problem
    if lat is None and station is None:
        return R.BAD_STRUCTURE, f"{where}: give latitude and longitude, a station, or both"
    return Position(
        carrier,
        ts_us,
        None if lat is None else float(lat),
        None if lon is None else float(lon),
        station,
        where,
    )


def _json(payload: bytes, limits: IngestLimits) -> Any:
    """The payload as JSON, or the problem of the whole message."""
    if len(payload) > limits.max_payload_bytes:
        return R.OVERSIZED, f"{len(payload)} bytes > {limits.max_payload_bytes}"
    if too_deep(payload, limits.max_json_depth):
        return R.TOO_DEEP, f"JSON nested deeper than {limits.max_json_depth} levels"
    try:
        doc = json.loads(payload.decode("utf-8"), object_pairs_hook=object_or_ambiguous)
    except UnicodeDecodeError as exc:
        return R.BAD_ENCODING, f"not UTF-8: {exc.reason} at byte {exc.start}"
    except (ValueError, RecursionError) as exc:
        return R.BAD_JSON, json_error(exc)
    if type(doc) is Ambiguous:
        return R.DUPLICATE_KEY, f"key {doc.repeated[:64]!r} appears twice"
    return _JsonDoc(doc)


@dataclass(frozen=True, slots=True)
class _JsonDoc:
    doc: Any


def read_native(payload: bytes, limits: IngestLimits) -> list[Position | Problem] | Problem:
    """Every position of a native position message, or the problem of the whole message."""
    parsed = _json(payload, limits)
    if type(parsed) is not _JsonDoc:
        return parsed
    doc = parsed.doc
    if type(doc) is dict and set(doc) == {"positions"}:
        records = doc["positions"]
        if type(records) is not list:
            return R.BAD_STRUCTURE, '"positions" must hold a list'
    elif type(doc) is dict:
        records = [doc]
    else:
        return R.BAD_STRUCTURE, "payload is not a JSON object"
    if len(records) > limits.max_readings_per_message:
        return R.TOO_MANY_READINGS, f"{len(records)} positions > {limits.max_readings_per_message}"
    many = len(records) > 1
    out: list[Position | Problem] = []
    for index, record in enumerate(records):
        where = f"positions[{index}]" if many else "position"
        if type(record) is Ambiguous:
            out.append((R.DUPLICATE_KEY, f"{where}: key {record.repeated[:64]!r} appears twice"))
            continue
        if type(record) is not dict or set(record) - _NATIVE_KEYS:
            extra = sorted(set(record) - _NATIVE_KEYS) if type(record) is dict else []
            detail = f"unknown keys {extra}" if extra else "a position is an object"
            out.append((R.BAD_STRUCTURE, f"{where}: {detail}"))
            continue
        raw_ts = record.get("ts")
        ts_us = parse_timestamp_us(raw_ts)
        out.append(
            _position(
                where,
                record.get("carrier"),
                ts_us,
                raw_ts,
                record.get("latitude"),
                record.get("longitude"),
                record.get("station"),
            )
        )
    return out


def _get(doc: Any, path: str | None) -> Any:
    if path is None:
        return _MISSING
    for part in path.split("."):
        if type(doc) is list and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        elif type(doc) is dict:
            doc = doc.get(part, _MISSING)
        else:
            return _MISSING
    return doc


def read_with_profile(
    payload: bytes, profile: ProfileDocument, limits: IngestLimits
) -> list[Position | Problem] | Problem:
    """Every position of a message in a ``carries: positions`` profile (its field paths, time
    format and the scale and offset of latitude and longitude)."""
    parsed = _json(payload, limits)
    if type(parsed) is not _JsonDoc:
        return parsed
    assert profile.time is not None
    records = _get(parsed.doc, profile.batch) if profile.batch else [parsed.doc]
    if type(records) is not list:
        return R.BAD_STRUCTURE, f"profile {profile.name}: no array at {profile.batch!r}"
    if len(records) > limits.max_readings_per_message:
        return R.TOO_MANY_READINGS, f"{len(records)} positions > {limits.max_readings_per_message}"
    read_time = time_reader(profile.time)
    lat_map, lon_map = profile.metrics.get("latitude"), profile.metrics.get("longitude")
    many = len(records) > 1
    out: list[Position | Problem] = []
    for index, record in enumerate(records):
        where = f"{profile.batch}[{index}]" if many else "position"
        carrier = _get(record, profile.asset)
        if type(carrier) is int:
            carrier = str(carrier)
        if type(carrier) is str and carrier:
            carrier = profile.asset_prefix + carrier
        raw_ts = _get(record, profile.time.field)
        ts_us = None if raw_ts is _MISSING else read_time(raw_ts)
        coordinates = []
        for spec in (lat_map, lon_map):
            value = None if spec is None else _get(record, spec.field)
            if value is _MISSING or value is None:
                value = None
            elif type(value) is float or type(value) is int:
                value = value * spec.scale + spec.offset  # type: ignore[union-attr]
            coordinates.append(value)
        station = _get(record, profile.station)
        station = None if station is _MISSING or station is None else station
        if type(station) is int:
            station = str(station)
        lat, lon = coordinates
        out.append(_position(where, carrier, ts_us, raw_ts, lat, lon, station))
    return out


def store_positions(
    conn: Conn,
    messages: Sequence[tuple[RawMessage, DeviceKey]],
    profiles: LoadedProfiles | None,
    q: Quarantine,
    result: BatchResult,
    *,
    limits: IngestLimits,
    now: datetime,
) -> None:
    """Read, check and store the positions of ``messages`` (each with its known, live device);
    quarantine what cannot be taken; move each carrier's latest position."""
    now_us = (now - UNIX_EPOCH) // timedelta(microseconds=1)
    newest_us = now_us + limits.max_future // timedelta(microseconds=1)
    oldest_us = now_us - limits.max_past // timedelta(microseconds=1)
    read: list[tuple[Decoded, list[Position | Problem]]] = []
    for msg, device in messages:
        profile = profiles.positions.get(device.profile or "") if profiles is not None else None
        items = (
            read_native(msg.payload, limits)
            if profile is None
            else read_with_profile(msg.payload, profile, limits)
        )
        if type(items) is tuple:
            q.message(msg, device.ref, device.customer_id, items[0], items[1])
            continue
        assert isinstance(items, list)
        read.append((Decoded(msg, device, []), items))
    carrier_keys = sorted(
        {(d.device.customer_id, p.carrier) for d, ps in read for p in ps if type(p) is Position}
    )
    site_keys = sorted(
        {
            (d.device.customer_id, p.station)
            for d, ps in read
            for p in ps
            if type(p) is Position and p.station is not None
        }
    )
    carriers = repo.find_carriers(conn, carrier_keys) if carrier_keys else {}
    sites = repo.find_sites(conn, site_keys) if site_keys else {}
    rows: list[repo.PositionRow] = []
    for decoded, items in read:
        device = decoded.device
        problems: list[Problem] = []
        for item in items:
            if type(item) is not Position:
                problems.append(item)  # type: ignore[arg-type]
                continue
            where = item.where
            carrier = carriers.get((device.customer_id, item.carrier))
            if carrier is None or carrier.retired:
                what = "is retired" if carrier else "of this customer"
                problems.append((R.UNKNOWN_CARRIER, f"{where}: no carrier {item.carrier!r} {what}"))
                continue
            if item.ts_us > newest_us:
                ahead = span_words(limits.max_future)
                problems.append((R.TS_IN_FUTURE, f"{where}: more than {ahead} ahead"))
                continue
            if item.ts_us < oldest_us:
                old = span_words(limits.max_past)
                problems.append((R.TS_TOO_OLD, f"{where}: more than {old} old"))
                continue
            lat, lon, site_id = item.latitude, item.longitude, None
            if item.station is not None:
                site = sites.get((device.customer_id, item.station))
                if site is None or site.retired:
                    detail = f"{where}: no site {item.station[:64]!r} of this customer"
                    problems.append((R.UNKNOWN_STATION, detail))
                    continue
                site_id = site.id
                if lat is None:  # at the station: its coordinates, when it has them
                    lat, lon = site.latitude, site.longitude
            ts = UNIX_EPOCH + timedelta(microseconds=item.ts_us)
            rows.append(
                repo.PositionRow(
                    carrier.id,
                    ts,
                    device.customer_id,
                    lat,
                    lon,
                    site_id,
                    device.id,
                    decoded.message.received_at,
                )
            )
        if problems:
            q.items(decoded, problems)
    if not rows:
        return
    stored = repo.insert_positions(conn, rows)
    result.positions_stored += stored
    result.positions_duplicates += len(rows) - stored
    latest: dict[int, repo.PositionRow] = {}
    for row in rows:
        if row.carrier_id not in latest or row.ts > latest[row.carrier_id].ts:
            latest[row.carrier_id] = row
    repo.move_latest(conn, list(latest.values()), "telemetry")
    repo.prune_positions(conn, sorted(latest), now)
