"""Payload profiles as data: apply, list, show; the devices that speak them; the per-process
cache that ingest reads them from. No SQL text (``ingest.repository``), no HTTP, no MQTT."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from psycopg import Connection
from pydantic import BaseModel

from fleet.schemas import Principal
from fleetcare.errors import NotFound
from ingest import repository as repo
from ingest.profile_fast import FastJsonReader, fast_json_reader
from ingest.profiles import (
    SPARKPLUG,
    CompiledProfile,
    ProfileDocument,
    ProfileError,
    SparkplugDevice,
    check_metrics,
    compile_profile,
    parse_profile,
)
from ingest.sparkplug import SparkplugTarget

Conn = Connection[Any]
# A changed profile reaches running ingestors within this many seconds.
PROFILE_CACHE_MAX_AGE_S = 10.0


class Profile(BaseModel):
    """A stored profile: its document as applied, and its version."""

    name: str
    format: str
    version: int
    document: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def _record(row: repo.ProfileRow) -> Profile:
    return Profile(
        name=row.name,
        format=row.format,
        version=row.version,
        document=row.document,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def apply_profile(conn: Conn, principal: Principal, data: object, *, source: str) -> Profile:
    """Check and store a profile (a new version when it changed); the operator's to write.

    A bad document raises ProfileError naming ``source``, the field and what is wrong, and
    changes nothing.
    """
    principal.require("catalogue:write")
    doc = parse_profile(data, source)
    check_metrics(doc, repo.kind_metric_names(conn))
    if doc.format != SPARKPLUG and doc.carries == "readings":
        compile_profile(doc)
    _check_unclaimed(conn, doc)
    stored = doc.model_dump(mode="json", exclude_defaults=True)
    stored["name"], stored["format"] = doc.name, doc.format
    return _record(repo.upsert_profile(conn, doc.name, doc.format, stored))


def _check_unclaimed(conn: Conn, doc: ProfileDocument) -> None:
    """Refuse a topic or a Sparkplug (group, edge node, device) another profile already reads:
    ingest would not know which of the two a message follows."""
    others = LoadedProfiles([r for r in repo.list_profiles(conn) if r.name != doc.name])
    if doc.topic is not None:
        clash = next((n for n, t in others.topic_of.items() if t == doc.topic), None)
        if clash is not None:
            raise ProfileError(f"profile {doc.name}: topic {doc.topic!r} is profile {clash}'s")
    for dev in doc.sparkplug or []:
        found = others.sparkplug.get((dev.group, dev.edge_node, dev.device))
        if found is not None:
            where = "/".join((dev.group, dev.edge_node, dev.device)).rstrip("/")
            raise ProfileError(f"profile {doc.name}: sparkplug {where} is profile {found[0]}'s")


def get_profile(conn: Conn, name: str, principal: Principal | None = None) -> Profile:
    """One profile (everyone may read profiles); as ``principal`` may see it, when given."""
    row = repo.get_profile(conn, name)
    seen = None if row is None else _as_seen_by(conn, principal, [row])
    if not seen:
        raise NotFound(f"no profile {name!r}")
    return seen[0]


def list_profiles(conn: Conn, principal: Principal | None = None) -> list[Profile]:
    """Every profile; as ``principal`` may see them, when given."""
    return _as_seen_by(conn, principal, repo.list_profiles(conn))


def _as_seen_by(
    conn: Conn, principal: Principal | None, rows: list[repo.ProfileRow]
) -> list[Profile]:
    """The profiles as ``principal`` may see them: a Sparkplug B profile maps edge nodes onto
    customers' devices and assets by reference, so a caller confined to a customer sees only
    the mappings of its own devices, and not a profile with none of them (None: everything)."""
    if principal is None or principal.scope is None:
        return [_record(r) for r in rows]
    named = {
        entry.get("fleetcare_device")
        for r in rows
        if r.format == SPARKPLUG
        for entry in r.document.get("sparkplug") or []
    }
    devices = repo.find_devices(conn, sorted(d for d in named if isinstance(d, str)))
    own = {ref for ref, d in devices.items() if d.customer_id == principal.scope}
    out = []
    for row in rows:
        record = _record(row)
        if row.format == SPARKPLUG:
            entries = [
                e for e in row.document.get("sparkplug") or [] if e.get("fleetcare_device") in own
            ]
            if not entries:
                continue
            record.document = {**row.document, "sparkplug": entries}
        out.append(record)
    return out


def require_profile(conn: Conn, name: str | None) -> None:
    """Invalid unless ``name`` is None (native v1) or a stored profile."""
    if name is not None and repo.get_profile(conn, name) is None:
        raise ProfileError(f"profile: no profile {name!r} (apply it first)")


# --- what ingest reads -----------------------------------------------------------------------


class LoadedProfiles:
    """The profiles of one database, checked and compiled once."""

    def __init__(self, rows: list[repo.ProfileRow]) -> None:
        self.loaded_at = time.monotonic()
        self.documents: dict[str, ProfileDocument] = {}
        self.compiled: dict[str, CompiledProfile] = {}
        self.fast: dict[str, FastJsonReader] = {}  # JSON profiles of one-level fields
        self.broken: dict[str, str] = {}
        self.positions: dict[str, ProfileDocument] = {}  # profiles that carry positions
        for row in rows:
            try:
                doc = parse_profile(row.document, f"profile {row.name}")
                self.documents[row.name] = doc
                if doc.carries == "positions":  # read by ingest.positions
                    self.positions[row.name] = doc
                elif doc.format != SPARKPLUG:
                    self.compiled[row.name] = compiled = compile_profile(doc)
                    if (fast := fast_json_reader(compiled)) is not None:
                        self.fast[row.name] = fast
            except ProfileError as exc:  # stored before a stricter release: say so per message
                self.broken[row.name] = exc.detail
        # topic patterns: (levels, index of the {device} level)
        self.topics: list[tuple[list[str], int]] = []
        self.topic_of: dict[str, str] = {}  # profile → its topic pattern
        # Sparkplug B: (group, edge node, device or "") → (profile, its mapping)
        self.sparkplug: dict[tuple[str, str, str], tuple[str, SparkplugDevice]] = {}
        self.sparkplug_nodes: dict[tuple[str, str], list[str]] = {}  # → fleetcare devices
        # ... → {metric name: (asset, kind metric, scale, offset)}, plain tuples for the hot path
        self.sparkplug_targets: dict[tuple[str, str, str], dict[str, SparkplugTarget]] = {}
        for doc in self.documents.values():
            if doc.topic is not None:
                levels = doc.topic.split("/")
                self.topics.append((levels, levels.index("{device}")))
                self.topic_of[doc.name] = doc.topic
            for dev in doc.sparkplug or []:
                key = (dev.group, dev.edge_node, dev.device)
                if key not in self.sparkplug:
                    self.sparkplug[key] = (doc.name, dev)
                    self.sparkplug_targets[key] = {
                        name: (m.asset, m.metric, m.scale, m.offset)
                        for name, m in dev.metrics.items()
                    }
                refs = self.sparkplug_nodes.setdefault((dev.group, dev.edge_node), [])
                if dev.fleetcare_device not in refs:
                    refs.append(dev.fleetcare_device)

    def topic_filters(self) -> list[str]:
        """MQTT filters for the profiles' own topics ({device} as ``+``), for the ingestor."""
        return sorted({t.replace("{device}", "+") for t in self.topic_of.values()})

    def sparkplug_groups(self) -> list[str]:
        """The Sparkplug B groups that profiles map."""
        return sorted({group for group, _ in self.sparkplug_nodes})

    def device_for_topic(self, topic: str) -> str | None:
        """The device a profile's topic pattern names in ``topic``; None when none matches."""
        if not self.topics:
            return None
        levels = topic.split("/")
        for pattern, at in self.topics:
            if len(pattern) == len(levels) and all(
                p == t for i, (p, t) in enumerate(zip(pattern, levels, strict=True)) if i != at
            ):
                return levels[at] or None
        return None


class ProfileCache:
    """Compiled profiles per database, reloaded when older than ``max_age_s``."""

    def __init__(self, max_age_s: float = PROFILE_CACHE_MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._by_database: dict[tuple[str, int, str], LoadedProfiles] = {}

    def get(self, conn: Conn) -> LoadedProfiles:
        """The profiles of ``conn``'s database (read again when stale)."""
        info = conn.info
        key = (info.host, info.port, info.dbname)
        with self._lock:
            found = self._by_database.get(key)
        if found is None or time.monotonic() - found.loaded_at > self.max_age_s:
            found = LoadedProfiles(repo.list_profiles(conn))
            with self._lock:
                self._by_database[key] = found
        return found


PROFILES = ProfileCache()
