"""Synthetic tire histories written straight into the database, for tests and the bench.

Each tire wears over a life of 40,000-80,000 km: tread falls from 16 mm towards 1.6 mm
(read only every ``tread_every`` rows, like a drive-over reader), the carcass runs hotter
and the pressure sags as it wears. Finished lives are recorded in ``asset_lives``; the
current life is the asset's telemetry since ``renewed_at``. This is test data, not the
simulators' physics: it only has to carry a learnable signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from psycopg import Connection

Conn = Connection[Any]

TIRE_METRICS = ("odometer_km", "pressure_kpa", "temperature_c", "load_kg", "speed_kmh")


@dataclass(frozen=True)
class SyntheticFleet:
    """What was written: asset ids and the start of each asset's current life."""

    asset_ids: list[int]
    renewed_at: dict[int, datetime]
    last_time: dict[int, datetime]


def _life_rows(
    rng: np.random.Generator, life_km: float, rows: int, done_share: float
) -> dict[str, np.ndarray]:
    km = np.linspace(0.0, life_km * done_share, rows)
    wear = km / life_km
    return {
        "odometer_km": km,
        "tread_depth_mm": 16.0 - 14.4 * wear**1.2 + rng.normal(0, 0.15, rows),
        "pressure_kpa": 820.0 - 60.0 * wear + rng.normal(0, 4.0, rows),
        "temperature_c": 45.0 + 25.0 * wear**2 + rng.normal(0, 1.5, rows),
        "load_kg": 3000.0 + rng.normal(0, 150.0, rows),
        "speed_kmh": 80.0 + rng.normal(0, 5.0, rows),
    }


def write_tire_fleet(
    conn: Conn,
    customer_id: int,
    *,
    n_assets: int,
    lives_per_asset: int,
    rows_per_life: int,
    current_rows: int,
    start: datetime,
    step: timedelta = timedelta(hours=1),
    tread_every: int = 5,
    seed: int = 0,
    ref_prefix: str = "TIRE",
) -> SyntheticFleet:
    """Create ``n_assets`` tires with finished lives and a current life; return their ids."""
    rng = np.random.default_rng(seed)
    metric_ids = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    renewed: dict[int, datetime] = {}
    last_time: dict[int, datetime] = {}
    ids: list[int] = []
    lives: list[tuple[int, str, datetime, datetime, str, float]] = []
    with conn.cursor() as cur:
        rows_out = cur.execute(
            "INSERT INTO assets (customer_id, kind, ref, installed_at, renewed_at)"
            " SELECT %s, 'tire', %s || '-' || g, %s, %s FROM generate_series(1, %s) g"
            " RETURNING id",
            (customer_id, ref_prefix, start, start, n_assets),
        ).fetchall()
        ids = [int(r[0]) for r in rows_out]
        with cur.copy("COPY telemetry (time, asset_id, metric_id, value) FROM STDIN") as copy:
            for asset_id in ids:
                t = start
                for life in range(lives_per_asset + 1):
                    current = life == lives_per_asset
                    life_km = float(rng.uniform(40_000, 80_000))
                    n = current_rows if current else rows_per_life
                    share = float(rng.uniform(0.3, 0.9)) if current else 1.0
                    data = _life_rows(rng, life_km, n, share)
                    times = [t + i * step for i in range(n)]
                    for name, values in data.items():
                        mid = metric_ids[name]
                        for i in range(n):
                            if name == "tread_depth_mm" and i % tread_every:
                                continue
                            copy.write_row((times[i], asset_id, mid, float(values[i])))
                    if current:
                        renewed[asset_id] = t
                        last_time[asset_id] = times[-1]
                    else:
                        lives.append((asset_id, "tire", t, times[-1], "failure", life_km))
                        t = times[-1] + step
        if lives:
            cur.executemany(
                "INSERT INTO asset_lives (asset_id, component, started_at, ended_at, end_reason,"
                " usage_at_end) VALUES (%s, %s, %s, %s, %s, %s)",
                lives,
            )
        cur.execute(
            "UPDATE assets a SET renewed_at = v.renewed"
            " FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, renewed)"
            " WHERE a.id = v.id",
            (ids, [renewed[a] for a in ids]),
        )
        cur.execute(
            "INSERT INTO asset_seen (asset_id, last_seen_at)"
            " SELECT * FROM unnest(%s::bigint[], %s::timestamptz[])"
            " ON CONFLICT (asset_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at",
            (ids, [last_time[a] for a in ids]),
        )
    return SyntheticFleet(asset_ids=ids, renewed_at=renewed, last_time=last_time)


def append_readings(
    conn: Conn, asset_ids: list[int], when: datetime, odometer: dict[int, float], seen: datetime
) -> None:
    """One new reading (all tire metrics but tread) per asset at ``when``; moves last_seen_at
    the way ingest does."""
    metric_ids = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    values = {"pressure_kpa": 790.0, "temperature_c": 55.0, "load_kg": 3000.0, "speed_kmh": 80.0}
    with conn.cursor() as cur:
        with cur.copy("COPY telemetry (time, asset_id, metric_id, value) FROM STDIN") as copy:
            for a in asset_ids:
                copy.write_row((when, a, metric_ids["odometer_km"], odometer[a]))
                for name, v in values.items():
                    copy.write_row((when, a, metric_ids[name], v))
        cur.execute(
            "INSERT INTO asset_seen AS s (asset_id, last_seen_at)"
            " SELECT unnest(%s::bigint[]), %s ON CONFLICT (asset_id)"
            " DO UPDATE SET last_seen_at = greatest(s.last_seen_at, EXCLUDED.last_seen_at)",
            (asset_ids, seen),
        )
