"""The telemetry path without MQTT: validate raw messages, store the good readings, quarantine
the rest, move usage counters. Used by the MQTT consumer and by the simulators' history
generator alike. No SQL text here (see ``ingest.repository``); no commits (the caller owns the
transaction)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg import Connection

from fleetcare.clock import Clock
from ingest import repository as repo
from ingest import sparkplug_sessions
from ingest.catalogue import CATALOGUE_MAX_AGE_S, CATALOGUES, MetricCatalogue, MetricSpec
from ingest.columns import Rows, Target, position
from ingest.decode import (
    Decoded,
    Quarantine,
    Reading,
    decode_sparkplug,
    decode_v1,
    decode_with_profile,
)
from ingest.positions import position_ref_from_topic, store_positions
from ingest.profile_service import PROFILES, LoadedProfiles
from ingest.repository import AssetKey, DeviceKey
from ingest.schemas import BatchResult, IngestLimits, QuarantineReason, RawMessage
from ingest.sparkplug_bulk import SparkplugBulk, read_columns
from ingest.times import UNIX_EPOCH, number_text_problem, parse_timestamp_us, span_words
from ingest.times import epoch_us as _us

Conn = Connection[Any]
R = QuarantineReason

ONE_US = timedelta(microseconds=1)


def device_ref_from_topic(topic: str, topic_root: str) -> str | None:
    """``<root>/<device>/telemetry`` → device reference; None for any other topic."""
    if not topic.endswith("/telemetry") or not topic.startswith(topic_root):
        return None
    middle = topic[len(topic_root) : -len("/telemetry")]
    if len(middle) < 2 or middle[0] != "/" or "/" in middle[1:]:
        return None
    return middle[1:]


def _from_us(us: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=us)


def _where(index: int, many: bool, batch: str = "readings", labels: list[str] | None = None) -> str:
    if labels is not None:  # a text message's rows: by their line
        return labels[index]
    return f"{batch}[{index}]" if many else "reading"


def _asset_problem(where: str, ref: str, asset: AssetKey | None) -> tuple[R, str]:
    if asset is None:
        return R.UNKNOWN_ASSET, f"{where}: no asset {ref!r} of this customer"
    return R.RETIRED_ASSET, f"{where}: asset {ref!r} is retired"


def _time_problem(
    where: str, ts: object, ts_us: int | None, newest_us: int, limits: IngestLimits
) -> tuple[R, str]:
    if ts_us is None:
        return (
            R.BAD_TIMESTAMP,
            f"{where}: ts {str(ts)[:64]!r} is neither RFC 3339 with an offset nor integer "
            "epoch milliseconds",
        )
    if ts_us > newest_us:
        ahead = span_words(limits.max_future)
        return R.TS_IN_FUTURE, f"{where}: ts {ts!r} is more than {ahead} ahead"
    return R.TS_TOO_OLD, f"{where}: ts {ts!r} is more than {span_words(limits.max_past)} old"


def _value_problem(
    where: str, kind: str, name: str, value: object, spec: MetricSpec | None
) -> tuple[R, str]:
    if spec is None:
        return R.UNKNOWN_METRIC, f"{where}: {kind} has no metric {name[:64]!r}"
    if type(value) is not float and type(value) is not int:
        why = number_text_problem(value)
        return R.NOT_A_NUMBER, f"{where}: {name} = {str(value)[:64]!r} is not a number{why}"
    if type(value) is float and not math.isfinite(value):
        return R.NOT_FINITE, f"{where}: {name} = {value}"
    return (
        R.OUT_OF_BOUNDS,
        f"{where}: {name} = {value} outside [{spec.low:g}, {spec.high:g}] {spec.unit}",
    )


def store_messages(
    conn: Conn,
    messages: Sequence[RawMessage],
    *,
    limits: IngestLimits,
    clock: Clock,
    optimistic: bool = False,
    before_writes: Callable[[], None] | None = None,
) -> BatchResult:
    """Validate ``messages``, store their good readings once, quarantine the rest.

    Runs in the caller's transaction and never commits. Readings go through binary COPY
    into a staging table and ``INSERT ... ON CONFLICT DO NOTHING`` on (asset, metric, time),
    so a redelivered message is harmless. Each asset's last-seen time and usage counter,
    and each device's last-seen time, move forward once per call. ``optimistic``: see
    ``repository.insert_telemetry`` (the caller retries on ``UniqueViolation``).
    ``before_writes`` is called once the batch's Python work (decode, checks, the COPY's
    encoding) is done and before its writes: the ingest worker lets its next writer start
    preparing then, so one batch's COPY overlaps the next one's Python.
    """
    result = BatchResult(messages=len(messages))
    if not messages:
        return result
    q = Quarantine(limits, result)
    catalogue = CATALOGUES.get(conn)
    now_us = _us(clock.now())
    oldest_us = now_us - limits.max_past // ONE_US
    newest_us = now_us + limits.max_future // ONE_US

    # 1. topics → devices
    with_ref: list[tuple[RawMessage, str]] = []
    profiles: LoadedProfiles | None = None  # read only when a message needs a profile
    deaths: list[tuple[RawMessage, list[str]]] = []  # Sparkplug NDEATH/DDEATH: who went offline
    sparkplug_seen = False
    to_positions: set[int] = set()  # ids of messages on a device's position topic
    for msg in messages:
        if msg.sparkplug is not None:
            profiles = profiles or PROFILES.get(conn)
            sparkplug_seen = True
            ref, dead = _sparkplug_device(msg, profiles, q)
            if dead:
                deaths.append((msg, dead))
            if ref is not None:
                with_ref.append((msg, ref))
            continue
        ref = device_ref_from_topic(msg.topic, limits.topic_root)
        if ref is None and (ref := position_ref_from_topic(msg.topic, limits.topic_root)):
            to_positions.add(id(msg))
        if ref is None:
            profiles = profiles or PROFILES.get(conn)
            ref = profiles.device_for_topic(msg.topic)
        if ref is None:
            q.message(
                msg,
                None,
                None,
                R.BAD_TOPIC,
                f"expected {limits.topic_root}/<device>/telemetry (or /position)",
            )
        else:
            with_ref.append((msg, ref))
    if sparkplug_seen:  # the sessions its BIRTHs left, its NDEATHs ended (same transaction)
        sparkplug_sessions.persist(conn, messages)
    refs = {ref for _, ref in with_ref} | {ref for _, dead in deaths for ref in dead}
    devices = repo.find_devices(conn, sorted(refs)) if refs else {}

    # 2. payloads → readings (the usual Sparkplug B DATA: → columns, checked in bulk in 3.)
    decoded: list[Decoded] = []
    bulk = SparkplugBulk()
    # carriers' positions (ingest.positions), not readings
    position_messages: list[tuple[RawMessage, DeviceKey]] = []
    device_seen: dict[int, datetime] = {}
    for msg, ref in with_ref:
        device = devices.get(ref)
        if device is None:
            q.message(msg, ref, None, R.UNKNOWN_DEVICE, f"no device {ref!r}")
            continue
        if device.retired:
            q.message(msg, ref, device.customer_id, R.RETIRED_DEVICE, f"device {ref!r} is retired")
            continue
        seen = device_seen.get(device.id)
        if seen is None or msg.received_at > seen:
            device_seen[device.id] = msg.received_at
        if msg.sparkplug is not None:
            assert profiles is not None
            mapping = profiles.sparkplug_targets[_sparkplug_key(msg)]
            columns = read_columns(msg.sparkplug, mapping, oldest_us, newest_us)
            if columns is None:
                item = decode_sparkplug(msg, device, q, mapping)
            else:  # read in 3., in its place in the batch
                bulk.add(len(decoded), device.customer_id, columns)
                item = Decoded(msg, device, [])
        elif device.profile is None:
            if to_positions and id(msg) in to_positions:
                position_messages.append((msg, device))
                continue
            item = decode_v1(msg, device, limits, q)
        else:
            profiles = profiles or PROFILES.get(conn)
            if device.profile in profiles.positions or id(msg) in to_positions:
                position_messages.append((msg, device))
                continue
            item = decode_with_profile(msg, device, limits, q, profiles)
        if item is not None:
            decoded.append(item)
            if item.seq is not None:  # confirmed once this batch commits (stored or not)
                result.confirmed.append((ref, item.seq, msg.epoch))
    offline: dict[int, datetime] = {}
    for msg, dead in deaths:
        for ref in dead:
            device = devices.get(ref)
            if device is not None and msg.received_at >= device_seen.get(
                device.id, msg.received_at
            ):
                offline[device.id] = msg.received_at
                device_seen.pop(device.id, None)

    if position_messages:
        store_positions(
            conn, position_messages, profiles, q, result, limits=limits, now=clock.now()
        )

    wanted = bulk.wanted()
    for item in decoded:
        wanted.setdefault(item.device.customer_id, set()).update(
            [r.asset for r in item.readings if type(r) is Reading]
        )
    keys = sorted((customer, ref) for customer, refs in wanted.items() for ref in refs)
    assets_of: dict[int, dict[str, AssetKey]] = {customer: {} for customer in wanted}
    for (customer, ref), found in (repo.find_assets(conn, keys) if keys else {}).items():
        assets_of[customer][ref] = found

    # 3. readings → rows. Sparkplug DATA read in bulk goes into ``rows`` (ingest.sparkplug_bulk);
    # the rest reading by reading: per reading one lookup of its asset with its kind's metrics,
    # per value one of its metric and a bounds comparison.
    rows = Rows()
    targets = _targets(assets_of, catalogue)
    # (no readings: a Sparkplug message checked in bulk, or nothing to say)
    careful = [index for index, item in enumerate(decoded) if item.readings]
    for item_index in bulk.check(decoded, targets, rows):  # what the bulk checks refused
        item = decoded[item_index]
        assert profiles is not None and item.message.sparkplug is not None
        mapping = profiles.sparkplug_targets[_sparkplug_key(item.message)]
        decoded[item_index] = decode_sparkplug(item.message, item.device, q, mapping) or item
        careful.append(item_index)
    times: list[int] = []
    asset_ids: list[int] = []
    metric_ids: list[int] = []
    values: list[float] = []
    row_order: list[int] = []  # each row's place in the batch (ingest.columns.position)
    add_time, add_asset, add_metric, add_value, add_order = (
        times.append,
        asset_ids.append,
        metric_ids.append,
        values.append,
        row_order.append,
    )
    asset_seen = rows.seen
    # asset id → (time µs, position, counter): the latest reading, the last of equal times
    usage: dict[int, tuple[int, int, float]] = {}
    for asset_id, at_us, pos, value in rows.usage:
        last = usage.get(asset_id)
        if last is None or (at_us, pos) > last[:2]:
            usage[asset_id] = (at_us, pos, value)
    catalogue_reloaded = False
    for item_index in sorted(careful):
        item = decoded[item_index]
        problems: list[tuple[R, str]] = []
        readings = item.readings
        many, batch, labels = len(readings) > 1, item.batch_label, item.labels
        customer = item.device.customer_id
        mine = targets.get(customer, {})
        kept: set[int] = set()
        pos = position(item_index, 0)
        for index, reading in enumerate(readings):
            if type(reading) is not Reading:
                problems.append(reading)  # type: ignore[arg-type]  # found by the decoder
                continue
            target = mine.get(reading.asset)
            if target is None:  # unknown or retired
                key = assets_of.get(customer, {}).get(reading.asset)
                problems.append(
                    _asset_problem(_where(index, many, batch, labels), reading.asset, key)
                )
                continue
            ts = reading.ts
            ts_us = ts * 1000 if type(ts) is int else parse_timestamp_us(ts)
            if ts_us is None or ts_us > newest_us or ts_us < oldest_us:
                where = _where(index, many, batch, labels)
                problems.append(_time_problem(where, ts, ts_us, newest_us, limits))
                continue
            asset_id, known, usage_id, kind = target
            stored = False
            for name, value in reading.metrics.items():
                pos += 1
                spec = known.get(name)
                if (
                    spec is None
                    and not catalogue_reloaded
                    and (time.monotonic() - catalogue.loaded_at > CATALOGUE_MAX_AGE_S)
                ):
                    catalogue, catalogue_reloaded = CATALOGUES.reload(conn), True
                    targets = _targets(assets_of, catalogue)
                    mine = targets.get(customer, {})
                    asset_id, known, usage_id, kind = mine.get(reading.asset, target)
                    spec = known.get(name)
                vt = type(value)
                # NaN and infinities fail the bounds comparison too (bounds are finite)
                if (
                    spec is None
                    or (vt is not float and vt is not int)
                    or not (spec.low <= value <= spec.high)
                ):
                    where = _where(index, many, batch, labels)
                    problems.append(_value_problem(where, kind, name, value, spec))
                    continue
                add_time(ts_us)
                add_asset(asset_id)
                add_metric(spec.id)
                add_value(value)
                add_order(pos)
                stored = True
                if spec.id == usage_id:
                    last = usage.get(asset_id)
                    if last is None or (ts_us, pos) > last[:2]:
                        usage[asset_id] = (ts_us, pos, float(value))
            if stored:
                kept.add(asset_id)
        received_at = item.message.received_at
        for asset_id in kept:
            seen = asset_seen.get(asset_id)
            if seen is None or received_at > seen:
                asset_seen[asset_id] = received_at
        if problems:
            q.items(item, problems)

    # 4. writes
    copy_data, staged = None, len(times) + len(rows)
    if times or rows.times_us:
        copy_data = repo.encode_telemetry_copy(
            np.concatenate([*rows.times_us, np.array(times, dtype=np.int64)]),
            np.concatenate([*rows.asset_ids, np.array(asset_ids, dtype=np.int64)]),
            np.concatenate([*rows.metric_ids, np.array(metric_ids, dtype=np.int64)]),
            np.concatenate([*rows.values, np.array(values, dtype=np.float64)]),
            in_key_order=True,
            positions=np.concatenate([*rows.positions, np.array(row_order, dtype=np.int64)]),
        )
    if before_writes is not None:
        before_writes()
    if copy_data is not None:
        result.stored = repo.insert_telemetry(conn, copy_data, staged, optimistic=optimistic)
        result.duplicates = staged - result.stored
    # The rest in one round trip (pipeline mode): back from each round trip this writer waits
    # for the GIL, which the writer preparing the next batch holds (up to the interpreter's
    # switch interval), while PostgreSQL has nothing to do.
    with conn.pipeline() if q.rows or asset_seen or device_seen or offline else nullcontext():
        if q.rows:
            repo.insert_quarantine(conn, q.rows)
        if asset_seen:
            ids = sorted(asset_seen)
            repo.update_assets_seen(
                conn,
                ids,
                [asset_seen[i] for i in ids],
                [usage[i][2] if i in usage else None for i in ids],
                [_from_us(usage[i][0]) if i in usage else None for i in ids],
            )
            result.assets_touched = len(ids)
        if device_seen:
            ids = sorted(device_seen)
            repo.update_devices_seen(conn, ids, [device_seen[i] for i in ids])
        if offline:
            ids = sorted(offline)
            repo.set_devices_offline(conn, ids, [offline[i] for i in ids])
    return result


def _targets(
    assets_of: dict[int, dict[str, AssetKey]], catalogue: MetricCatalogue
) -> dict[int, dict[str, Target]]:
    """Customer → asset reference → its target, for the assets that are not retired."""
    empty: dict[str, MetricSpec] = {}
    return {
        customer: {
            ref: (
                a.id,
                catalogue.by_kind.get(a.kind, empty),
                catalogue.usage_metric_id.get(a.kind),
                a.kind,
            )
            for ref, a in assets.items()
            if not a.retired
        }
        for customer, assets in assets_of.items()
    }


def _sparkplug_key(msg: RawMessage) -> tuple[str, str, str]:
    topic = msg.sparkplug.topic
    return topic.group, topic.edge_node, topic.device


def _sparkplug_device(
    msg: RawMessage, profiles: LoadedProfiles, q: Quarantine
) -> tuple[str | None, list[str]]:
    """(the fleetcare device a Sparkplug message is read for, the devices its DEATH takes
    offline). A node's own messages need no mapping of their own when its devices have one."""
    sp = msg.sparkplug
    topic = sp.topic
    key = _sparkplug_key(msg)
    if topic.message_type.endswith("DEATH") and not sp.offline:
        return None, []  # the will of an older session: nothing to say about the device
    found = profiles.sparkplug.get(key)
    node_devices = profiles.sparkplug_nodes.get((topic.group, topic.edge_node), [])
    dead: list[str] = []
    if sp.offline:
        dead = (
            list(node_devices)
            if not topic.is_device
            else ([found[1].fleetcare_device] if found else [])
        )
    if found is not None and not sp.offline:
        return found[1].fleetcare_device, dead
    if found is None and not (node_devices and not topic.is_device):
        where = "/".join(key).rstrip("/")
        q.message(msg, None, None, R.UNKNOWN_DEVICE, f"no sparkplug_b profile maps {where}")
    return None, dead


def quarantine_message(
    conn: Conn, msg: RawMessage, reason: QuarantineReason, detail: str, *, limits: IngestLimits
) -> BatchResult:
    """Quarantine a whole message (e.g. one that made ``store_messages`` fail)."""
    result = BatchResult(messages=1)
    root = limits.topic_root
    ref = device_ref_from_topic(msg.topic, root) or position_ref_from_topic(msg.topic, root)
    device = repo.find_devices(conn, [ref]).get(ref) if ref else None
    q = Quarantine(limits, result)
    q.message(msg, ref, device.customer_id if device else None, reason, detail)
    repo.insert_quarantine(conn, q.rows)
    return result


def store_one_by_one(
    conn: Conn, batch: Sequence[RawMessage], *, limits: IngestLimits, clock: Clock
) -> BatchResult:
    """A batch that failed for a reason other than the database: each message in its own
    savepoint, the one that fails quarantined (``internal_error``) so the rest goes on."""
    total = BatchResult()
    with conn.transaction():
        for msg in batch:
            try:
                with conn.transaction():
                    total.merge(store_messages(conn, [msg], limits=limits, clock=clock))
            except Exception as exc:
                if isinstance(exc, psycopg.Error) and transient(exc, conn):
                    raise
                detail = f"{type(exc).__name__}: {exc}"[:500]
                total.merge(quarantine_message(conn, msg, R.INTERNAL_ERROR, detail, limits=limits))
    return total


def transient(exc: psycopg.Error, conn: Conn) -> bool:
    """Errors worth retrying the whole batch for: the connection, the server, or a conflict."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if conn.closed or conn.broken:
        return True
    state = exc.sqlstate or ""
    # 08 connection, 40 rollback (deadlock, serialization), 53 resources, 57 operator (shutdown)
    return state[:2] in ("08", "40", "53", "57")
