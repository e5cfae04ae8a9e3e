"""Decoding a message of the v1 contract (or of its device's payload profile) into readings to
check, or into the reason the whole message is refused; and the quarantine rows of a batch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

import msgspec

from ingest.json_guard import (
    Ambiguous,
    json_error,
    keys_add_up,
    object_or_ambiguous,
    too_deep,
)
from ingest.profile_service import LoadedProfiles
from ingest.profiles import Good, Problem
from ingest.repository import DeviceKey, QuarantineRow
from ingest.schemas import BatchResult, IngestLimits, QuarantineReason, RawMessage
from ingest.sparkplug import SparkplugMessage, SparkplugTarget

R = QuarantineReason


class Reading(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A reading of the right shape (what a well-formed payload decodes into directly).

    Every field is typed and unknown fields are refused rather than skipped, so the fast
    decoder never descends more than four levels (batch, list, reading, metrics): deeper
    nesting fails at its first bracket and goes the careful path, which bounds the depth.
    """

    asset: str
    ts: int | str
    metrics: dict[str, float]


class Batch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    readings: list[Reading]
    # the device's message number, for confirmation (docs/telemetry.md#confirmation)
    seq: int | None = None


# The fast path: typed decoding straight into Reading (in C, no per-reading dicts). A payload
# it refuses for any reason goes the careful path, which says exactly what is wrong with which
# reading and keeps the good ones.
FAST_ONE = msgspec.json.Decoder(Reading)
FAST_BATCH = msgspec.json.Decoder(Batch)
BATCH_PREFIX = b'{"readings":'

# An item of a decoded message: a reading to check further, or a problem already found.
Item = Reading | tuple[QuarantineReason, str]


@dataclass(slots=True)
class Decoded:
    """A message whose device is known and whose JSON has the right outer shape."""

    message: RawMessage
    device: DeviceKey
    readings: list[Item]
    seq: int | None = None  # what the device numbered this message, to confirm it
    # where a message's readings are, as its device wrote it: a profile's batch array
    batch_label: str = "readings"
    labels: list[str] | None = None  # where each reading is, when not by index (``line 7``)


class Quarantine:
    """Collects quarantine rows and counts, capping item rows per message."""

    def __init__(self, limits: IngestLimits, result: BatchResult) -> None:
        self.rows: list[QuarantineRow] = []
        self.limits = limits
        self.result = result

    def message(
        self,
        msg: RawMessage,
        device_ref: str | None,
        customer_id: int | None,
        reason: R,
        detail: str,
    ) -> None:
        self.result.quarantined[reason.value] += 1
        self.result.quarantined_by_device[(device_ref, reason.value)] += 1
        self.rows.append(
            QuarantineRow(
                msg.received_at,
                msg.topic,
                device_ref,
                customer_id,
                reason.value,
                detail,
                msg.payload,
            )
        )

    def items(self, item: Decoded, problems: list[tuple[R, str]]) -> None:
        """Item-level problems of one message: one row each, up to the per-message cap."""
        cap = self.limits.max_quarantine_rows_per_message
        msg, dev = item.message, item.device
        for reason, _ in problems:
            self.result.quarantined[reason.value] += 1
            self.result.quarantined_by_device[(dev.ref, reason.value)] += 1
        shown = problems if len(problems) <= cap else problems[: cap - 1]
        for reason, detail in shown:
            self.rows.append(
                QuarantineRow(
                    msg.received_at,
                    msg.topic,
                    dev.ref,
                    dev.customer_id,
                    reason.value,
                    detail,
                    msg.payload,
                )
            )
        if len(problems) > cap:
            rest = problems[cap - 1 :]
            kinds = sorted({r.value for r, _ in rest})
            self.rows.append(
                QuarantineRow(
                    msg.received_at,
                    msg.topic,
                    dev.ref,
                    dev.customer_id,
                    rest[0][0].value,
                    f"{len(rest)} more rejected items in this message (reasons: "
                    f"{', '.join(kinds)}); first: {rest[0][1]}",
                    msg.payload,
                )
            )


def decode_v1(
    msg: RawMessage, device: DeviceKey, limits: IngestLimits, q: Quarantine
) -> Decoded | None:
    """Size, encoding, JSON and shape; None (and quarantined) when the whole message is bad."""
    size = len(msg.payload)
    if size > limits.max_payload_bytes:
        q.message(
            msg,
            device.ref,
            device.customer_id,
            R.OVERSIZED,
            f"{size} bytes > {limits.max_payload_bytes}",
        )
        return None
    payload = msg.payload
    try:
        if payload.startswith(BATCH_PREFIX):
            whole = FAST_BATCH.decode(payload)
            batch, seq = whole.readings, whole.seq
            outer = 1 if seq is None else 2
            if len(batch) <= limits.max_readings_per_message and keys_add_up(payload, batch, outer):
                return Decoded(msg, device, list(batch), seq)
        else:
            one = FAST_ONE.decode(payload)
            if keys_add_up(payload, (one,), 0):
                return Decoded(msg, device, [one])
    except (ValueError, RecursionError):  # msgspec.DecodeError, UnicodeDecodeError
        pass  # not of the usual shape (or not JSON at all): the careful path tells why
    return decode_carefully(msg, device, limits, q)


def decode_with_profile(
    msg: RawMessage,
    device: DeviceKey,
    limits: IngestLimits,
    q: Quarantine,
    profiles: LoadedProfiles,
) -> Decoded | None:
    """A message in the payload profile its device speaks (``ingest.profiles``)."""
    ref, customer, name = device.ref, device.customer_id, device.profile or ""
    if len(msg.payload) > limits.max_payload_bytes:
        detail = f"{len(msg.payload)} bytes > {limits.max_payload_bytes}"
        q.message(msg, ref, customer, R.OVERSIZED, detail)
        return None
    profile = profiles.compiled.get(name)
    if profile is None:
        detail = profiles.broken.get(name) or f"device {ref!r} speaks profile {name!r}, not found"
        if name in profiles.documents:  # a sparkplug_b profile: not a message format
            detail = f"profile {name!r} is Sparkplug B: its edge nodes publish on spBv1.0/..."
        q.message(msg, ref, customer, R.BAD_STRUCTURE, detail)
        return None
    label = profile.doc.batch or "readings"
    fast = profiles.fast.get(name)
    if fast is not None:  # typed decoding straight into readings; None: the careful path
        readings = fast.read(msg.payload, limits.max_readings_per_message, Reading)
        if readings is not None:
            return Decoded(msg, device, readings, batch_label=label)
    labels: list[str] | None = None
    if profile.format == "json":
        read = profile.read_message(msg.payload, limits.max_readings_per_message)
    else:
        located = profile.read_text_lines(msg.payload, limits.max_readings_per_message)
        if type(located[0]) is list:  # the items and their lines, not one problem
            read, labels = cast(tuple[list[Good | Problem], list[str]], located)
        else:
            read = cast(Problem, located)
    if type(read) is tuple:
        q.message(msg, ref, customer, read[0], read[1])
        return None
    items: list[Item] = []
    for item in read:
        if len(item) == 3:  # (asset, µs, metrics); the checks follow as for v1
            asset, ts_us, metrics = cast(Good, item)
            items.append(Reading(asset, ts_us // 1000, metrics))
        else:
            items.append(cast(Problem, item))
    return Decoded(msg, device, items, batch_label=label, labels=labels)


def decode_sparkplug(
    msg: RawMessage, device: DeviceKey, q: Quarantine, targets: dict[str, SparkplugTarget]
) -> Decoded | None:
    """The named metrics of a Sparkplug B message → readings, through the profile's mapping
    of metric names to (asset, metric). Metrics the mapping does not name are not read (as a
    JSON profile reads only its fields); a metric left unnamed by the host (an alias without
    a trusted BIRTH) is quarantined, raw bytes kept."""
    sp = cast(SparkplugMessage, msg.sparkplug)
    if sp.problem is not None:
        q.message(msg, device.ref, device.customer_id, R.BAD_PROTOBUF, sp.problem)
        return None
    found = sp.values(targets, Reading)
    where = "/".join((sp.topic.message_type, sp.topic.edge_node, sp.topic.device)).rstrip("/")
    problems: list[Item] = [
        (R.NO_BIRTH, f"{where}: {_why_unnamed(alias, sp.unnamed_why)}") for alias in found.unnamed
    ]
    problems += [(R.BAD_TIMESTAMP, f"{where}: {name}: no timestamp") for name in found.untimed]
    return Decoded(msg, device, found.readings + problems)


def _why_unnamed(alias: int | None, untrusted_why: str) -> str:
    """Why a Sparkplug metric could not be named: no trusted BIRTH (a rebirth was asked), a
    metric with neither name nor alias, or an alias the session's BIRTHs never declared."""
    if untrusted_why:
        return f"alias {alias} unknown ({untrusted_why}); rebirth asked"
    if alias is None:
        return "a metric with neither name nor alias"
    return f"alias {alias} is not declared by the node's BIRTHs of this session"


def decode_carefully(
    msg: RawMessage, device: DeviceKey, limits: IngestLimits, q: Quarantine
) -> Decoded | None:
    """The general decoder: the reason for a bad message, a problem for each bad reading."""
    ref, customer = device.ref, device.customer_id
    if too_deep(msg.payload, limits.max_json_depth):
        q.message(
            msg,
            ref,
            customer,
            R.TOO_DEEP,
            f"JSON nested deeper than {limits.max_json_depth} levels (a reading needs 4)",
        )
        return None
    try:
        text = msg.payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        q.message(
            msg, ref, customer, R.BAD_ENCODING, f"not UTF-8: {exc.reason} at byte {exc.start}"
        )
        return None
    try:
        # the standard library: it accepts NaN and Infinity (validation reports them as not
        # finite) and shows every object's keys, so that a repeated one is refused
        doc = json.loads(text, object_pairs_hook=object_or_ambiguous)
    except (ValueError, RecursionError) as exc:
        q.message(msg, ref, customer, R.BAD_JSON, json_error(exc))
        return None
    if type(doc) is Ambiguous:
        q.message(msg, ref, customer, R.DUPLICATE_KEY, f"key {doc.repeated[:64]!r} appears twice")
        return None
    if type(doc) is not dict:
        q.message(msg, ref, customer, R.BAD_STRUCTURE, "payload is not a JSON object")
        return None
    seq = None
    if "readings" in doc:
        raw, seq = doc["readings"], doc.get("seq")
        if (
            type(raw) is not list
            or len(doc) != (1 if seq is None else 2)
            or type(seq)
            not in (
                int,
                type(None),
            )
        ):
            q.message(
                msg,
                ref,
                customer,
                R.BAD_STRUCTURE,
                '"readings" must hold a list, and "seq" (an integer) is the only other key',
            )
            return None
        if len(raw) > limits.max_readings_per_message:
            q.message(
                msg,
                ref,
                customer,
                R.TOO_MANY_READINGS,
                f"{len(raw)} readings > {limits.max_readings_per_message}",
            )
            return None
    else:
        raw = [doc]
    many = len(raw) > 1
    items: list[Item] = []
    for index, reading in enumerate(raw):
        where = f"readings[{index}]" if many else "reading"
        if type(reading) is Ambiguous:
            items.append((R.DUPLICATE_KEY, f"{where}: key {reading.repeated[:64]!r} appears twice"))
            continue
        if type(reading) is not dict:
            items.append((R.BAD_STRUCTURE, f"{where} is not an object"))
            continue
        asset_ref = reading.get("asset")
        ts = reading.get("ts")
        metrics = reading.get("metrics")
        if type(metrics) is Ambiguous:
            items.append(
                (
                    R.DUPLICATE_KEY,
                    f"{where}: metric {metrics.repeated[:64]!r} appears twice (which value "
                    "was meant is unknown)",
                )
            )
            continue
        if type(asset_ref) is not str or type(metrics) is not dict or ts is None:
            items.append(
                (R.BAD_STRUCTURE, f'{where} needs "asset" (string), "ts" and "metrics" (object)')
            )
            continue
        # the checks of ts and of each value follow for every reading, as on the fast path
        items.append(Reading(asset_ref, ts, metrics))
    return Decoded(msg, device, items, seq)
