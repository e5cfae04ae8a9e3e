"""History for training: complete lifetimes as past telemetry, with their end-of-life records.

For each kind, a separate history fleet (assets ``H-...``, devices ``<customer>-h-...``) is
registered and simulated at real pace (speed-up 1) from new until every component has ended
at least one life (failure, or now and then a planned replacement), ending now; it starts a
whole number of weeks before now, so days and weeks follow the calendar. Its readings
are encoded as the devices would send them and stored through ingest's own pipeline
(``ingest.pipeline.store_messages``: the same validation, quarantine and usage counters as
live telemetry). The ground truth and the lives go to the simulators' tables and
``asset_lives``. Each four weeks of history are one transaction, owned here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import Connection

from fleetcare.clock import ManualClock, SystemClock
from fleetcare.errors import Conflict
from ingest.pipeline import store_messages
from ingest.schemas import IngestLimits, RawMessage
from kinds.schemas import KindDefinition
from simulators import service
from simulators.devices import GatewayBehaviour, telemetry_topic
from simulators.fleet import Fleet, at_ms, hour_of_week
from simulators.replay import CmapssUnit
from simulators.schemas import ENGINES_PER_AIRCRAFT, FleetSpec, LifeEnd, TruthRow

Conn = Connection[Any]

# a reading per asset per step: elevators live for years, so they report half as often
STEP = {"tire": timedelta(hours=6), "elevator": timedelta(hours=12), "engine": timedelta(hours=6)}
GENERIC_STEP = timedelta(hours=12)  # a kind simulated by the generic process (typical life ~180 d)
BUILT_IN = ("tire", "elevator", "engine")
FLUSH_EVERY = timedelta(days=28)  # within ingest's max_past of 30 days
TRUTH_EVERY = timedelta(days=1)
MAX_HISTORY = timedelta(days=3650)
REPLACED_SHARE = 0.15  # lives ended by a planned replacement before failing


@dataclass
class HistorySummary:
    """What a history run wrote."""

    lives: Counter[str] = field(default_factory=Counter)  # "<kind> <component> <reason>"
    readings: int = 0
    messages: int = 0
    stored: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    truth_rows: int = 0
    days: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        lives = ", ".join(f"{k}: {v}" for k, v in sorted(self.lives.items()))
        return (
            f"{self.readings} readings in {self.messages} messages ({self.stored} values "
            f"stored, quarantined {dict(self.quarantined) or 0}); lives: {lives}; "
            f"{self.truth_rows} ground-truth rows; days: "
            + ", ".join(f"{k} {v:.0f}" for k, v in self.days.items())
        )


def history_spec(spec: FleetSpec, kind: str, lifetimes: int, replay: bool = False) -> FleetSpec:
    """The spec of one kind's history fleet: ``lifetimes`` assets, real pace, new assets.

    Failed assets are repaired after 6 hours (a new life begins), except replayed engines:
    each replays one C-MAPSS unit to its end and stays there. A kind without physics of its
    own (``spec.other``) is simulated by the generic process."""
    counts = {k: (lifetimes if k == kind else 0) for k in BUILT_IN}
    other = {} if kind in BUILT_IN else {kind: lifetimes}
    return spec.model_copy(
        update={
            "tires": counts["tire"], "elevators": counts["elevator"], "engines": counts["engine"],
            "other": other, "speedup": 1.0, "offline": False, "malformed_rate": 0.0,
            "warmup": False,
            "repair_after_h": None if replay else 6.0,
        }
    )  # fmt: skip


def history_engines(lifetimes: int) -> int:
    """Engines a history of ``lifetimes`` engine lives uses (whole aircraft)."""
    return history_spec(FleetSpec(), "engine", lifetimes).aircraft * ENGINES_PER_AIRCRAFT


def _history_fleet(
    spec: FleetSpec,
    units: list[CmapssUnit] | None,
    definitions: Mapping[str, KindDefinition] | None = None,
) -> Fleet:
    fleet = Fleet(
        spec, cmapss_units=units, behaviour=_steady(spec), history=True, definitions=definitions
    )
    fleet.max_step_h = _step(fleet) / timedelta(hours=1)
    return fleet


def _step(fleet: Fleet) -> timedelta:
    """How far one history step goes for the (one) kind of ``fleet``."""
    return STEP.get(next(iter(fleet.kinds)), GENERIC_STEP)


def _steady(spec: FleetSpec) -> GatewayBehaviour:
    b = GatewayBehaviour.steady()
    b.batch_max = spec.batch_max
    return b


class _Lifecycle:
    """Ends lives: records failures and decides planned replacements; knows when done."""

    def __init__(self, fleet: Fleet, seed: int) -> None:
        self.fleet = fleet
        self.rng = np.random.default_rng([seed, 0x484953])
        self.pending = {(a.ref, c) for a in fleet.assets for c in fleet.kinds[a.kind].components}
        self.replace_at: dict[tuple[str, str], float] = {}
        for key in sorted(self.pending):
            self._draw(key)

    def _draw(self, key: tuple[str, str]) -> None:
        # a replayed C-MAPSS unit runs to failure, as recorded
        share = 0.0 if any(kf.exact for kf in self.fleet.kinds.values()) else REPLACED_SHARE
        planned = self.rng.random() < share
        self.replace_at[key] = float(self.rng.uniform(0.6, 0.95)) if planned else np.inf

    def ended(self, lives: list[LifeEnd]) -> None:
        for life in lives:
            key = (life.asset_ref, life.component)
            self.pending.discard(key)
            self._draw(key)

    def planned_replacements(self, now: datetime) -> list[LifeEnd]:
        out: list[LifeEnd] = []
        for kf in self.fleet.kinds.values():
            for c in kf.components:
                wear, failed = kf.population.wear(c), kf.population.failed(c)
                for i, ref in enumerate(kf.refs):
                    if not failed[i] and wear[i] >= self.replace_at[(ref, c)]:
                        life = self.fleet.replace(ref, c, now)
                        if life is not None:
                            out.append(life)
        self.ended(out)
        return out

    @property
    def done(self) -> bool:
        return not self.pending


def _duration(
    spec: FleetSpec,
    units: list[CmapssUnit] | None,
    end: datetime,
    definitions: Mapping[str, KindDefinition] | None = None,
) -> timedelta:
    """How long the history must run, in whole weeks (so that it starts at the same hour of
    the week as ``end``): simulate once, physics only, until every component ended a life."""
    fleet = _history_fleet(spec, units, definitions)
    fleet.observed = False
    fleet.begin_at_hour_of_week(hour_of_week(end))
    step = _step(fleet)
    start = end - MAX_HISTORY
    fleet.start(start)
    life = _Lifecycle(fleet, spec.seed)
    now = start
    while not life.done and now - start < MAX_HISTORY:
        now += step
        life.ended(fleet.advance_to(now).life_ends)
        life.planned_replacements(now)
    week = timedelta(days=7)
    return -((start - now) // week) * week


def write_history(
    conn: Conn,
    spec: FleetSpec,
    lifetimes: int,
    topic_root: str,
    data_dir: Path,
    *,
    cmapss_units: list[CmapssUnit] | None = None,
    now: datetime | None = None,
    definitions: Mapping[str, KindDefinition] | None = None,
) -> HistorySummary:
    """Write ``lifetimes`` complete lifetimes per kind of ``spec`` as history ending ``now``
    (``definitions``: those of the kinds in ``spec.other``, for the generic process)."""
    summary = HistorySummary()
    end = now or SystemClock().now()
    kinds = [
        k
        for k, n in (("tire", spec.tires), ("elevator", spec.elevators), ("engine", spec.engines))
        if n
    ] + [k for k, n in sorted(spec.other.items()) if n]
    for kind in kinds:
        units = cmapss_units if kind == "engine" else None
        kind_spec = history_spec(spec, kind, lifetimes, replay=units is not None)
        duration = _duration(kind_spec, units, end, definitions)
        summary.days[kind] = duration / timedelta(days=1)
        fleet = _history_fleet(kind_spec, units, definitions)
        fleet.begin_at_hour_of_week(hour_of_week(end))
        fleet.start(end - duration)
        with conn.transaction():
            registration = service.register_fleet(conn, fleet, service.load_secrets(data_dir))
            if service.recorded_lives(conn, registration.asset_ids):
                raise Conflict(
                    f"customer {spec.customer!r} already has {kind} history; "
                    "use another --customer for more"
                )
            service.save_secrets(data_dir, registration.secrets)
        _run(conn, fleet, registration.asset_ids, end, topic_root, summary)
    return summary


def _run(
    conn: Conn,
    fleet: Fleet,
    asset_ids: dict[str, int],
    end: datetime,
    topic_root: str,
    summary: HistorySummary,
) -> None:
    source = "replay" if fleet.kinds.get("engine") and fleet.kinds["engine"].exact else "history"
    limits = IngestLimits(topic_root=topic_root)
    start = now = at_ms(fleet.real_ms(fleet.sim_h))
    life = _Lifecycle(fleet, fleet.spec.seed)
    step = _step(fleet)
    next_flush = start + FLUSH_EVERY
    next_truth = start + TRUTH_EVERY
    truth: list[TruthRow] = []
    ends: list[LifeEnd] = []
    while now < end:
        now = min(end, now + step)
        result = fleet.advance_to(now)
        life.ended(result.life_ends)
        ends.extend(result.life_ends)
        ends.extend(life.planned_replacements(now))
        summary.readings += result.readings
        if now >= next_truth or now >= end:
            truth.extend(fleet.truth())
            next_truth = now + TRUTH_EVERY
        if now >= next_flush or now >= end:
            _flush(conn, fleet, asset_ids, now, limits, topic_root, truth, ends, source, summary)
            truth, ends = [], []
            next_flush = now + FLUSH_EVERY


def _flush(
    conn: Conn,
    fleet: Fleet,
    asset_ids: dict[str, int],
    now: datetime,
    limits: IngestLimits,
    topic_root: str,
    truth: list[TruthRow],
    ends: list[LifeEnd],
    source: str,
    summary: HistorySummary,
) -> None:
    """Four weeks of history in one transaction: telemetry through ingest, truth, lives."""
    messages = [
        RawMessage(telemetry_topic(topic_root, ref), payload, now)
        for ref, gateway in fleet.gateways.items()
        for payload in gateway.drain()
    ]
    with conn.transaction():
        result = store_messages(conn, messages, limits=limits, clock=ManualClock(now))
        service.record_truth(conn, truth, asset_ids)
        for life in ends:
            service.record_life_end(conn, life, asset_ids, source)
            summary.lives[f"{life.kind} {life.component} {life.end_reason}"] += 1
    summary.messages += len(messages)
    summary.stored += result.stored
    summary.quarantined.update(result.quarantined)
    summary.truth_rows += len(truth)
