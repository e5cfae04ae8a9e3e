"""Scoring with the readings cache when the only assets it must read in full are not scorable
yet (a tire just replaced whose tread has not been read since: `fleetcare up` saw every
scoring pass fail for a minute, ~12 simulated days, until its truck visited the depot)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import Connection

from fleet import service as fleet
from fleetcare.clock import ManualClock
from models import repository as repo
from models.scoring import ModelCache, ReadingsCache, score_pass
from testkit import synthetic
from tests.fixtures.wear import install_model, make_fleet, trained_tire_model

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_pass_whose_full_reads_are_all_unscorable_scores_the_rest(
    conn: Connection[Any],
) -> None:
    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=4)
    clock = ManualClock(NOW)
    install_model(conn, trained_tire_model(), clock)
    models, cache = ModelCache(), ReadingsCache()
    with conn.transaction():
        first = score_pass(conn, clock, models=models, cache=cache)
    assert first.predictions == 4  # every window cached

    # one tire replaced: its new life has readings of every metric but tread (read only at
    # the depot), so its window is read in full and is not scorable; another tire moves on
    replaced, driven = tires.asset_ids[0], tires.asset_ids[1]
    renewed = tires.last_time[replaced] + timedelta(hours=1)
    conn.execute("UPDATE assets SET renewed_at = %s WHERE id = %s", (renewed, replaced))
    synthetic.append_readings(
        conn, [replaced], renewed + timedelta(hours=1), {replaced: 10.0}, seen=NOW
    )
    when = tires.last_time[driven] + timedelta(hours=2)
    synthetic.append_readings(conn, [driven], when, {driven: 90_000.0}, seen=NOW)
    conn.commit()

    clock.advance(60)
    with conn.transaction():
        second = score_pass(conn, clock, models=models, cache=cache)
    assert second.not_scorable == 1 and second.predictions == 1
    assert repo.list_predictions(conn, driven)[0].data_until == when
    assert replaced not in cache.entries  # read in full again once its tread is read

    # the next pass, where the replaced tire (still no tread reading) is the only one to read
    later = NOW + timedelta(minutes=5)
    synthetic.append_readings(
        conn, [replaced], renewed + timedelta(hours=2), {replaced: 20.0}, seen=later
    )
    conn.commit()
    clock.advance(60)
    with conn.transaction():
        third = score_pass(conn, clock, models=models, cache=cache)
    assert third.not_scorable == 1 and third.predictions == 0
