"""Sparkplug B, the host side: topics, payloads, and each edge node's session.

Edge nodes publish on ``spBv1.0/<group>/<NBIRTH|NDATA|NDEATH>/<edge node>`` and
``spBv1.0/<group>/<DBIRTH|DDATA|DDEATH>/<edge node>/<device>`` protobuf payloads of the
Eclipse Tahu schema (``sparkplug_b.proto``; the compiled module comes from the
``esio-spb-builder`` package — nothing here decodes protobuf by hand). A BIRTH names every
metric and may give it an alias; DATA then usually sends the alias alone. Every message of a
node session but NDEATH carries ``seq`` (0 to 255, wrapping), one more than the previous.

``SparkplugHost`` keeps, per edge node, the aliases its last NBIRTH/DBIRTH declared and the
next expected ``seq``. It runs where messages arrive in order (the MQTT network thread of
one ingestor) and does not touch the database: it turns each message into a
:class:`SparkplugMessage` of named metrics, which the writer maps to (device, asset, metric)
through the ``sparkplug_b`` payload profile. When it cannot be sure what an alias means — DATA
before any BIRTH, or after a gap in ``seq`` (a BIRTH may have been missed) — it does not
guess: such metrics stay unnamed (quarantined with reason ``no_birth``, raw bytes kept) and it
asks the node to be born again (NCMD ``Node Control/Rebirth``). Metrics that carry their name
are still read. NDEATH (matching the session's ``bdSeq``) and DDEATH mark devices offline.

Sessions outlive the process: each BIRTH's message carries a :class:`SessionSnapshot` that the
writer stores (``ingest.sparkplug_sessions``), and an NDEATH the bdSeq whose session it ends.
A host that meets a node it has not seen in this process (it restarted, or another ingestor
saw the BIRTH) asks ``resume`` for the stored session once, and goes on with its aliases from
the message's ``seq``: no rebirth. Only a node with no stored session, one whose death this
process saw, or a gap in ``seq`` make it ask for a rebirth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar, cast

from esio_spb_builder.core import sparkplug_b_pb2 as spb
from google.protobuf.message import DecodeError

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
NODE_TYPES = frozenset({"NBIRTH", "NDATA", "NDEATH"})
DEVICE_TYPES = frozenset({"DBIRTH", "DDATA", "DDEATH"})
REBIRTH_METRIC = "Node Control/Rebirth"
BD_SEQ = "bdSeq"
# Sparkplug B data types (sparkplug_b.proto, DataType)
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}


def subscription_filters(group: str = "+") -> list[str]:
    """The topic filters a host reads for ``group``: births, data and deaths of its nodes
    and devices (not the commands, nor other hosts' STATE)."""
    node = [f"{NAMESPACE}/{group}/{t}/+" for t in sorted(NODE_TYPES)]
    device = [f"{NAMESPACE}/{group}/{t}/+/+" for t in sorted(DEVICE_TYPES)]
    return node + device


def rebirth_topic(group: str, edge_node: str) -> str:
    """Where a host sends a node its commands (NCMD)."""
    return f"{NAMESPACE}/{group}/NCMD/{edge_node}"


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A Sparkplug B topic: group, message type, edge node and device ("" for the node)."""

    group: str
    message_type: str
    edge_node: str
    device: str = ""

    @property
    def is_device(self) -> bool:
        return self.message_type in DEVICE_TYPES


def parse_topic(topic: str) -> SparkplugTopic | None:
    """``spBv1.0/g/NDATA/e`` or ``spBv1.0/g/DDATA/e/d`` → its parts; None for anything else."""
    if not topic.startswith(NAMESPACE + "/"):
        return None
    parts = topic.split("/")
    if len(parts) == 4 and parts[2] in NODE_TYPES and parts[1] and parts[3]:
        return SparkplugTopic(parts[1], parts[2], parts[3])
    if len(parts) == 5 and parts[2] in DEVICE_TYPES and all(parts[1:]):
        return SparkplugTopic(parts[1], parts[2], parts[3], parts[4])
    return None


SparkplugTarget = tuple[str, str, float, float]  # asset, kind metric, scale, offset


class SparkplugValues(NamedTuple):
    """What a message carries for a profile's mapping (:meth:`SparkplugMessage.values`)."""

    by_time: dict[tuple[str, int], dict[str, Any]]  # (asset, epoch ms) → {kind metric: value}
    unnamed: list[int | None]  # aliases no trusted BIRTH declared
    untimed: list[str]  # mapped metrics with no time of their own nor the payload's
    readings: list[Any]  # with ``reading`` given: one per (asset, time), holding its dict


_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """An edge node's session as its BIRTHs left it (what is stored, and resumed)."""

    bd_seq: int | None
    born_ms: int  # the NBIRTH's payload timestamp: tells sessions apart
    aliases: Mapping[int, tuple[str, int]]  # alias → (metric name, data type)
    types: Mapping[str, int]  # "<device>\x00<name>" → data type
    devices: frozenset[str]


@dataclass(frozen=True, slots=True)
class SparkplugMessage:
    """A Sparkplug B message as the host understood it (made in order, read later): the
    decoded payload with the session's alias and type tables as they stood when it arrived
    (tables are replaced, never changed, at a BIRTH, so the snapshot stays true)."""

    topic: SparkplugTopic
    timestamp_ms: int | None
    payload: Any = None  # the decoded protobuf Payload
    aliases: Mapping[int, tuple[str, int]] | None = None  # None: the session is not trusted
    types: Mapping[str, int] | None = None  # "<device>\x00<name>" → data type, from BIRTHs
    problem: str | None = None  # the whole payload is unreadable (not Sparkplug B protobuf)
    unnamed_why: str = ""  # why metrics were left unnamed (DATA before BIRTH, a seq gap)
    offline: bool = False  # a DEATH the host accepted: the device (or node) went offline
    born: SessionSnapshot | None = None  # a BIRTH: the node's session as it now stands
    ended: tuple[int | None] | None = None  # an accepted NDEATH: (the bdSeq it ends,)

    def values(
        self,
        targets: Mapping[str, SparkplugTarget],
        reading: Callable[[str, int, dict[str, Any]], Any] | None = None,
    ) -> SparkplugValues:
        """The values of the metrics ``targets`` maps (name → asset, kind metric, scale,
        offset), converted and grouped per (asset, time); metrics sent by an alias the
        session cannot vouch for, and mapped metrics without a time, listed apart. Metrics
        the mapping does not name are skipped before their value is read. ``reading(asset,
        time, metrics)``, when given, makes the record of each (asset, time) as it is first
        met (its metrics dict is filled on), listed in ``readings``."""
        out = SparkplugValues({}, [], [], [])
        payload = self.payload
        if payload is None:
            return out
        aliases = self.aliases
        table = (
            aliases.resolved(targets)
            if isinstance(aliases, AliasTable)
            else AliasTable(aliases or {}).resolved(targets)
        )
        stamp, by_time, unnamed, made = self.timestamp_ms, out.by_time, out.unnamed, out.readings
        double, unknown = DOUBLE, _UNKNOWN
        for m in payload.metrics:
            # The hot path, DATA by alias: one lookup gives (asset, metric, scale, offset, data
            # type, name, no conversion) for the alias in this session and this mapping; a
            # double is read straight, and only a zero (which may be a null, or a value of
            # another type) or a zero time (which may be "not sent") is looked at closer. A
            # metric that carries its name (alias 0 or not declared) is read by its name.
            alias = m.alias
            entry = table.get(alias, unknown) if alias else unknown
            if entry is unknown:
                if m.name:
                    entry = self._named(m, targets)
                    if entry is None:
                        continue
                else:
                    if not alias and not m.HasField("alias"):
                        unnamed.append(None)
                        continue
                    entry = table.get(alias, unknown)
                    if entry is unknown:
                        unnamed.append(alias)
                        continue
            if entry is None:
                continue  # declared in the BIRTH, not mapped by the profile
            asset, metric, scale, offset, datatype, name, plain = entry
            value: Any = m.double_value if datatype == double else 0.0
            if not value:
                value = _value(m, m.datatype or datatype)
                if value is None:
                    continue
                t = type(value)
                if t is bool:
                    value = int(value)
                elif t is bytes:
                    value = value[:64].hex()  # reported as not a number
                if (t is float or t is int or t is bool) and not plain:
                    value = value * scale + offset
            elif not plain:
                value = value * scale + offset
            when = m.timestamp
            if not when:
                when = 0 if m.HasField("timestamp") else stamp
                if when is None:
                    out.untimed.append(name)
                    continue
            key = (asset, when)
            row = by_time.get(key)
            if row is None:
                by_time[key] = row = {metric: value}
                if reading is not None:
                    made.append(reading(asset, when, row))
            else:
                row[metric] = value
        return out

    def _named(self, m: Any, targets: Mapping[str, SparkplugTarget]) -> _Resolved | None:
        """A metric that carries its name: its mapping, its type from itself or the BIRTH."""
        name = m.name
        target = targets.get(name)
        if target is None:
            return None
        datatype = m.datatype or (self.types or _EMPTY).get(f"{self.topic.device}\x00{name}", 0)
        asset, metric, scale, offset = target
        return asset, metric, scale, offset, datatype, name, scale == 1.0 and offset == 0.0


# what an alias means under one mapping: asset, kind metric, scale, offset, data type, metric
# name, and whether the value is taken as it is (scale 1, offset 0)
_Resolved = tuple[str, str, float, float, int, str, bool]
_UNKNOWN: Any = object()
_T = TypeVar("_T")


class AliasTable(dict[int, tuple[str, int]]):
    """A session's aliases (alias → metric name, data type). Made at a BIRTH and never changed
    once a message carries it; it remembers what each alias means under each mapping
    (``targets``) it was read with, so that DATA costs one lookup per metric."""

    __slots__ = ("_derived", "_resolved")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._resolved: dict[int, tuple[Mapping[str, SparkplugTarget], dict[int, Any]]] = {}
        self._derived: dict[tuple[int, Any], tuple[Mapping[str, SparkplugTarget], Any]] = {}

    def derived(
        self,
        targets: Mapping[str, SparkplugTarget],
        make: Callable[[AliasTable, Mapping[str, SparkplugTarget]], _T],
    ) -> _T:
        """``make(self, targets)``, made once per mapping (the table never changes)."""
        key = (id(targets), make)
        cached = self._derived.get(key)
        if cached is not None and cached[0] is targets:
            return cast(_T, cached[1])
        made = make(self, targets)
        if len(self._derived) > 64:  # mappings reloaded many times: start again
            self._derived = {}
        self._derived[key] = (targets, made)  # writers may race: same result
        return made

    def resolved(self, targets: Mapping[str, SparkplugTarget]) -> dict[int, _Resolved | None]:
        """alias → what it means under ``targets`` (None: not mapped)."""
        cached = self._resolved.get(id(targets))
        if cached is not None and cached[0] is targets:
            return cached[1]
        table: dict[int, _Resolved | None] = {}
        for alias, (name, datatype) in self.items():
            target = targets.get(name)
            if target is not None:
                asset, metric, scale, offset = target
                plain = scale == 1.0 and offset == 0.0
                table[alias] = (asset, metric, scale, offset, datatype, name, plain)
            else:
                table[alias] = None
        if len(self._resolved) > 64:  # mappings reloaded many times: start again
            self._resolved = {}
        self._resolved[id(targets)] = (targets, table)  # writers may race: same result
        return table


def _value(metric: Any, datatype: int) -> Any:
    """The metric's value as Python (signed types from their two's-complement field)."""
    if metric.is_null:
        return None
    which = metric.WhichOneof("value")
    if which is None:
        return None
    value = getattr(metric, which)
    bits = _SIGNED_BITS.get(datatype)
    if bits is not None and isinstance(value, int):
        value &= (1 << bits) - 1
        if value >= 1 << (bits - 1):
            value -= 1 << bits
    return value


@dataclass
class _Node:
    """One edge node's session as last born."""

    bd_seq: int | None = None
    next_seq: int | None = None  # None: not born, or not trusted since a gap
    aliases: AliasTable = field(default_factory=AliasTable)  # alias → (name, type)
    types: dict[str, int] = field(default_factory=dict)  # metric name → data type
    devices: set[str] = field(default_factory=set)
    rebirth_asked_at: float = -1e9
    born_ms: int = 0

    def snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(
            self.bd_seq, self.born_ms, self.aliases, self.types, frozenset(self.devices)
        )


Publish = Callable[[str, bytes], None]
Resume = Callable[[str, str], SessionSnapshot | None]  # (group, edge node) → stored session


class SparkplugHost:
    """Aliases and sequence numbers of every edge node seen; rebirth requests when unsure.

    Not thread-safe: call :meth:`receive` from one thread, in the order messages arrived.
    ``publish(topic, payload)`` sends a command (the ingestor's MQTT client).
    """

    def __init__(
        self,
        publish: Publish | None = None,
        *,
        rebirth_interval_s: float = 5.0,
        resume: Resume | None = None,
    ) -> None:
        self.publish = publish
        self.rebirth_interval_s = rebirth_interval_s
        self.resume = resume
        self.nodes: dict[tuple[str, str], _Node] = {}
        self.rebirths_requested = 0
        self.seq_gaps = 0
        self.sessions_resumed = 0

    def receive(self, topic: SparkplugTopic, payload: bytes) -> SparkplugMessage:
        """Read one message, update the node's session, and say what it carried."""
        try:
            decoded = spb.Payload.FromString(payload)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            return SparkplugMessage(
                topic, None, problem=f"not a Sparkplug B payload: {str(exc)[:200]}"
            )
        key = (topic.group, topic.edge_node)
        node = self.nodes.get(key)
        kind = topic.message_type
        stamp = decoded.timestamp if decoded.HasField("timestamp") else None
        if kind == "NBIRTH":
            node = self._born(key, decoded, stamp)
            return SparkplugMessage(
                topic, stamp, decoded, node.aliases, node.types, born=node.snapshot()
            )
        if kind == "NDEATH":
            return self._node_death(topic, key, node, decoded, stamp)
        if node is None:
            node = self._resumed(key, decoded) or self.nodes.setdefault(key, _Node())
        why = self._check_seq(topic, node, decoded)
        if kind == "DBIRTH":
            if node.next_seq is not None:  # a device born in a session we trust
                node.devices.add(topic.device)
                aliases, types = AliasTable(node.aliases), dict(node.types)  # new, not edits
                for m in decoded.metrics:
                    if m.name:
                        types[f"{topic.device}\x00{m.name}"] = m.datatype
                        if m.HasField("alias"):
                            aliases[m.alias] = (m.name, m.datatype)
                node.aliases, node.types = aliases, types
                return SparkplugMessage(
                    topic, stamp, decoded, node.aliases, node.types, born=node.snapshot()
                )
            return self._message(topic, stamp, decoded, node, why)
        if kind == "DDEATH":
            node.devices.discard(topic.device)
            return SparkplugMessage(topic, stamp, offline=True)
        if not why and topic.is_device and topic.device not in node.devices:
            why = f"DDATA from device {topic.device!r} before its DBIRTH"
            self._ask_rebirth(topic, why)
        return self._message(topic, stamp, decoded, node, why)

    @staticmethod
    def _message(
        topic: SparkplugTopic, stamp: int | None, decoded: Any, node: _Node, why: str
    ) -> SparkplugMessage:
        aliases = None if why else node.aliases
        return SparkplugMessage(topic, stamp, decoded, aliases, node.types, unnamed_why=why)

    # -- sessions ------------------------------------------------------------------------------

    def _born(self, key: tuple[str, str], decoded: Any, stamp: int | None) -> _Node:
        # a new session: its aliases only, and rebirths may be asked again
        node = _Node(born_ms=int(time.time() * 1000) if stamp is None else stamp)
        for m in decoded.metrics:
            if m.name == BD_SEQ:
                value = _value(m, m.datatype or INT64)
                node.bd_seq = value if isinstance(value, int) else None
            if m.name:
                node.types[f"\x00{m.name}"] = m.datatype
                if m.HasField("alias"):
                    node.aliases[m.alias] = (m.name, m.datatype)
        node.next_seq = ((decoded.seq if decoded.HasField("seq") else 0) + 1) % 256
        self.nodes[key] = node
        return node

    def _node_death(
        self,
        topic: SparkplugTopic,
        key: tuple[str, str],
        node: _Node | None,
        decoded: Any,
        stamp: int | None,
    ) -> SparkplugMessage:
        bd_seq = next(
            (_value(m, m.datatype or INT64) for m in decoded.metrics if m.name == BD_SEQ), None
        )
        if node is not None and node.bd_seq is not None and bd_seq != node.bd_seq:
            # the will of an older session, delivered after the node was born again
            log.info("sparkplug %s/%s: NDEATH of an older session ignored", *key)
            return SparkplugMessage(topic, stamp)
        # dead: DATA before the next NBIRTH asks for a rebirth, never resumes the stored session
        self.nodes[key] = _Node()
        return SparkplugMessage(topic, stamp, offline=True, ended=(bd_seq,))

    def _resumed(self, key: tuple[str, str], decoded: Any) -> _Node | None:
        """The node's stored session, taken up at this message's ``seq`` (first sight of the
        node in this process); None when there is none (or it cannot be read)."""
        if self.resume is None:
            return None
        try:
            stored = self.resume(*key)
        except Exception:  # the database is away: as if nothing were stored (a rebirth)
            log.warning("sparkplug %s/%s: stored session unreadable", *key, exc_info=True)
            return None
        if stored is None:
            return None
        node = _Node(
            bd_seq=stored.bd_seq,
            next_seq=decoded.seq if decoded.HasField("seq") else None,
            aliases=AliasTable(stored.aliases),
            types=dict(stored.types),
            devices=set(stored.devices),
            born_ms=stored.born_ms,
        )
        self.nodes[key] = node
        self.sessions_resumed += 1
        log.info(
            "sparkplug %s/%s: session of bdSeq %s resumed from the database", *key, node.bd_seq
        )
        return node

    def _check_seq(self, topic: SparkplugTopic, node: _Node, decoded: Any) -> str:
        """ "" when the message is in sequence in a born session; otherwise why not (and the
        node is asked to be born again)."""
        if node.next_seq is None:
            why = f"{topic.message_type} before NBIRTH (or after a seq gap, until NBIRTH)"
            self._ask_rebirth(topic, why)
            return why
        seq = decoded.seq if decoded.HasField("seq") else None
        if seq != node.next_seq:
            self.seq_gaps += 1
            why = f"seq {seq} where {node.next_seq} was expected: a message may be missing"
            node.next_seq = None  # aliases untrusted until the next NBIRTH
            self._ask_rebirth(topic, why)
            return why
        node.next_seq = (seq + 1) % 256
        return ""

    def _ask_rebirth(self, topic: SparkplugTopic, why: str) -> None:
        key = (topic.group, topic.edge_node)
        node = self.nodes.setdefault(key, _Node())
        now = time.monotonic()
        if self.publish is None or now - node.rebirth_asked_at < self.rebirth_interval_s:
            return
        node.rebirth_asked_at = now
        self.rebirths_requested += 1
        log.info("sparkplug %s/%s: %s; asking for a rebirth", *key, why)
        self.publish(rebirth_topic(*key), rebirth_payload())


def rebirth_payload(now_ms: int | None = None) -> bytes:
    """An NCMD payload asking an edge node to publish its BIRTH certificates again."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    payload = spb.Payload(timestamp=stamp)
    metric = payload.metrics.add()
    metric.name = REBIRTH_METRIC
    metric.timestamp = stamp
    metric.datatype = BOOLEAN
    metric.boolean_value = True
    return payload.SerializeToString()
