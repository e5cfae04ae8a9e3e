"""The demo loop's set-up run again: each run's webhook receiver listens on a new port, and
the demo customers' endpoints follow it (a later `make up` must not send every webhook to the
previous run's receiver)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psycopg import Connection

from cli.demo import DEMO_FLEETS, DEMO_RECEIVER, prepare_loop, seed_demo
from fleetcare.clock import ManualClock

CLOCK = ManualClock()


def _endpoints(conn: Connection[Any]) -> list[tuple[int, str, bool, bool]]:
    rows = conn.execute(
        "SELECT id, url, enabled, retired_at IS NULL FROM webhook_endpoints"
        " WHERE description = %s ORDER BY id",
        (DEMO_RECEIVER,),
    ).fetchall()
    conn.commit()
    return [(int(i), str(u), bool(e), bool(live)) for i, u, e, live in rows]


def test_a_later_run_points_the_demo_webhooks_at_its_own_receiver(
    db_url: str, conn: Connection[Any], tmp_path: Path
) -> None:
    seed_demo(db_url, tmp_path)
    first = prepare_loop(db_url, tmp_path, "http://127.0.0.1:1111", CLOCK)
    assert sorted(first) == sorted(f.customer for f in DEMO_FLEETS)
    before = _endpoints(conn)
    assert [u for _, u, _, _ in before] == [
        f"http://127.0.0.1:1111/hooks/{f.customer}" for f in DEMO_FLEETS
    ]
    again = prepare_loop(db_url, tmp_path, "http://127.0.0.1:2222", CLOCK)
    assert again == first  # the same endpoints and secrets, moved to the new receiver
    assert _endpoints(conn) == [
        (i, u.replace(":1111", ":2222"), True, True) for i, u, _, _ in before
    ]
    # the data folder was removed: the secrets are gone, so the endpoints are replaced
    (tmp_path / "demo-webhook-secrets.json").unlink()
    fresh = prepare_loop(db_url, tmp_path, "http://127.0.0.1:3333", CLOCK)
    assert sorted(fresh) == sorted(first) and set(fresh.values()).isdisjoint(first.values())
    after = _endpoints(conn)
    assert [(i, live) for i, _, _, live in after[: len(before)]] == [
        (i, False) for i, _, _, _ in before
    ]
    assert [u for _, u, _, live in after if live] == [
        f"http://127.0.0.1:3333/hooks/{f.customer}" for f in DEMO_FLEETS
    ]
