"""Closing periods into invoices: proration, plan changes, usage, resets, late data,
idempotence under concurrent closers, totals equal to the lines, the invoice.issued event."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import Connection
from pydantic import ValidationError

from fleet import service as fleet
from fleet.schemas import AssetCreate
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from fleetcare.errors import Conflict, Invalid
from maintenance.billing import service as billing
from maintenance.billing.lines import usage_record_id
from maintenance.billing.schemas import CloseResult, Invoice
from maintenance.billing.worker import BillingStats, run_billing_worker
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import SubscriptionCreate
from maintenance.webhooks.catalog import EVENT_TYPES, validate_payload
from tests.fixtures.billing import (
    DEC_1,
    NOV_1,
    OPERATOR,
    add_counter,
    at,
    change_plan,
    lines_of,
    plan_id,
    subscribed_customer,
)
from tests.fixtures.events import check_back_office_events

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")

AFTER_NOV = ManualClock(at(3, month=12))


def _close(conn: Connection[Any], period: str = "2026-11", **kw: Any) -> CloseResult:
    result = billing.close_period(conn, period, kw.pop("clock", AFTER_NOV), **kw)
    conn.commit()
    assert result.failures == []
    return result


def _invoice_of(result: CloseResult, customer_id: int) -> Invoice:
    [invoice] = [i for i in result.invoices if i.customer_id == customer_id]
    return invoice


def _amounts(conn: Connection[Any], invoice_id: int, kind: str) -> list[int]:
    return [r["amount_minor"] for r in lines_of(conn, invoice_id) if r["kind"] == kind]


def test_proration_at_period_edges(conn: Connection[Any]) -> None:
    # Proactive: 2900 per asset-month
    whole = subscribed_customer(conn, "edge-whole", plan="proactive", starts_at=NOV_1)
    late = subscribed_customer(conn, "edge-late", plan="proactive", starts_at=at(16))
    # starts in the very last second of November: 1 s of 30 days rounds to 0
    last_second = subscribed_customer(
        conn, "edge-last", plan="proactive", starts_at=DEC_1 - timedelta(seconds=1)
    )
    december = subscribed_customer(conn, "edge-dec", plan="proactive", starts_at=DEC_1)
    trial = subscribed_customer(
        conn, "edge-trial", plan="proactive", starts_at=NOV_1, trial_days=10
    )
    two = subscribed_customer(conn, "edge-two", plan="proactive", starts_at=at(1), assets=2)
    ending = subscribed_customer(conn, "edge-end", plan="proactive", starts_at=at(1, month=10))
    subscriptions.transition(
        conn, OPERATOR, ending.subscription_id, "cancelled", ManualClock(at(10))
    )
    conn.commit()

    result = _close(conn)
    assert _amounts(conn, _invoice_of(result, whole.customer_id).id, "base_fee") == [2900]
    assert _amounts(conn, _invoice_of(result, late.customer_id).id, "base_fee") == [1450]
    assert _amounts(conn, _invoice_of(result, last_second.customer_id).id, "base_fee") == [0]
    # the trial's 10 days are free
    assert _amounts(conn, _invoice_of(result, trial.customer_id).id, "base_fee") == [1933]
    assert _amounts(conn, _invoice_of(result, two.customer_id).id, "base_fee") == [2900, 2900]
    # cancelled on the 10th at 00:00: 9 days
    assert _amounts(conn, _invoice_of(result, ending.customer_id).id, "base_fee") == [870]
    assert december.customer_id not in {i.customer_id for i in result.invoices}
    # the October invoice of the cancelled one is a whole month, the next month nothing
    october = _close(conn, "2026-10", clock=ManualClock(at(2, month=11)))
    assert _amounts(conn, _invoice_of(october, ending.customer_id).id, "base_fee") == [2900]
    dec = _close(conn, "2026-12", clock=ManualClock(at(2, month=1, year=2027)))
    assert ending.customer_id not in {i.customer_id for i in dec.invoices}
    assert _amounts(conn, _invoice_of(dec, december.customer_id).id, "base_fee") == [2900]


def test_plan_change_mid_period_splits_fees_and_usage(conn: Connection[Any]) -> None:
    c = subscribed_customer(conn, "switcher", plan="proactive", starts_at=NOV_1)
    # on the 11th at 00:00 the customer moves to per-km full service (400 per 1000 km)
    change_plan(conn, c.subscription_id, "full-service-tire", at(11))
    [asset] = c.asset_ids
    add_counter(
        conn,
        asset,
        [(at(31, month=10), 1_000.0), (at(5), 2_000.0), (at(10, 23), 3_000.0), (at(20), 5_500.0)],
    )
    result = _close(conn)
    invoice = _invoice_of(result, c.customer_id)
    lines = lines_of(conn, invoice.id)
    fees = [r for r in lines if r["kind"] == "base_fee"]
    usage = [r for r in lines if r["kind"] == "usage"]
    # 10 of 30 days of Proactive; full service has no fee
    assert [f["amount_minor"] for f in fees] == [967]
    assert fees[0]["quantity"] == Decimal("10.0000")
    assert (fees[0]["starts_at"], fees[0]["ends_at"]) == (NOV_1, at(11))
    # only the km driven after the change are billed per km: 2500 km * 0.4 = 1000
    assert [(u["quantity"], u["amount_minor"]) for u in usage] == [(Decimal("2500.0000"), 1000)]
    assert usage[0]["starts_at"] == at(11)
    assert invoice.total_minor == 1967
    # the usage record holds the whole covered month: 2000 + 2500 km
    [record], _ = billing.list_usage(conn, OPERATOR, asset_id=asset, period="2026-11", limit=10)
    assert record.quantity == Decimal("4500.000")
    assert record.id == usage_record_id(c.subscription_id, asset, "2026-11")


def test_counter_reset_and_late_data(conn: Connection[Any]) -> None:
    c = subscribed_customer(conn, "odometer", plan="full-service-tire", starts_at=NOV_1)
    [asset] = c.asset_ids
    add_counter(
        conn,
        asset,
        [
            (at(30, 22, month=10), 10_000.0),
            (at(3), 10_500.0),
            (at(8), 11_000.0),
            (at(8), 11_000.0),  # redelivered: the same row
            (at(15), 200.0),  # tire renewed: counter starts again at 0
            (at(22), 700.0),
        ],
    )
    draft = _invoice_of(_close(conn, clock=ManualClock(at(26))), c.customer_id)
    assert draft.status == "draft"
    # 500 + 500 + 200 (since the reset) + 500 = 1700 km at 400 per 1000 km
    assert _amounts(conn, draft.id, "usage") == [680]

    # late data before issue: re-closing the draft recomputes it, same invoice
    add_counter(conn, asset, [(at(28), 1_200.0)])
    with pytest.raises(Invalid):
        billing.close_period(conn, "2026-11", ManualClock(at(29)), issue=True)
    conn.rollback()
    issued = _invoice_of(_close(conn, issue=True), c.customer_id)
    assert issued.id == draft.id and issued.status == "issued"
    assert _amounts(conn, issued.id, "usage") == [880]
    frozen = lines_of(conn, issued.id)

    # late data after issue: the issued invoice never changes...
    add_counter(conn, asset, [(at(30, 23), 2_200.0)])
    again = _invoice_of(_close(conn), c.customer_id)
    assert again.total_minor == 880 and lines_of(conn, issued.id) == frozen
    # ...and the database refuses to change it anyway
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "UPDATE invoice_lines SET amount_minor = 1 WHERE invoice_id = %s", (issued.id,)
        )
    conn.rollback()

    # December's invoice carries the late 1000 km of November as an adjustment line
    add_counter(conn, asset, [(at(10, month=12), 2_700.0)])
    december = _invoice_of(
        _close(conn, "2026-12", clock=ManualClock(at(2, month=1, year=2027)), issue=True),
        c.customer_id,
    )
    lines = lines_of(conn, december.id)
    adjustment = [r for r in lines if r["kind"] == "usage_adjustment"]
    assert [(a["adjusts_period"], a["quantity"], a["amount_minor"]) for a in adjustment] == [
        ("2026-11", Decimal("1000.0000"), 400)
    ]
    assert _amounts(conn, december.id, "usage") == [200]
    assert december.total_minor == 400 + 200

    # once charged, the late usage is not charged again
    january = _invoice_of(
        _close(conn, "2027-01", clock=ManualClock(at(2, month=2, year=2027))), c.customer_id
    )
    assert [r["kind"] for r in lines_of(conn, january.id)] == ["usage"]


def test_closing_twice_yields_the_same_invoice(conn: Connection[Any]) -> None:
    c = subscribed_customer(conn, "twice", plan="full-service-tire", starts_at=NOV_1)
    add_counter(conn, c.asset_ids[0], [(at(1), 0.0), (at(9), 1234.5)])
    # the caller owns the transaction: a rolled-back close leaves nothing behind
    assert len(billing.close_period(conn, "2026-11", AFTER_NOV).invoices) == 1
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM usage_records").fetchone() == (0,)
    first = _invoice_of(_close(conn), c.customer_id)
    first_lines = lines_of(conn, first.id)
    second = _invoice_of(_close(conn), c.customer_id)
    assert second.id == first.id
    # nothing changed, so nothing was rewritten: the very same line rows
    assert lines_of(conn, second.id) == first_lines
    assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM usage_records").fetchone() == (1,)


def test_closing_is_idempotent_under_concurrent_closers(db_url: str, conn: Connection[Any]) -> None:
    customers = [
        subscribed_customer(conn, f"race-{n}", plan="full-service-tire", starts_at=at(5))
        for n in range(3)
    ]
    for c in customers:
        add_counter(conn, c.asset_ids[0], [(at(5), 0.0), (at(20), 4_321.0)])
    barrier = threading.Barrier(2)
    results: list[CloseResult] = []
    errors: list[BaseException] = []

    def closer() -> None:
        try:
            with connect(db_url) as own:
                barrier.wait(timeout=10)
                results.append(billing.close_period(own, "2026-11", AFTER_NOV, issue=True))
                own.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=closer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(results) == 2
    rows = conn.execute(
        "SELECT customer_id, count(*), min(total_minor), max(total_minor) FROM invoices"
        " WHERE period = '2026-11' GROUP BY customer_id ORDER BY customer_id"
    ).fetchall()
    assert len(rows) == 3 and all(r[1] == 1 and r[2] == r[3] == 1728 for r in rows)
    # both closers report the same invoices; exactly one invoice.issued per invoice
    assert sorted(i.id for i in results[0].invoices) == sorted(i.id for i in results[1].invoices)
    issued = conn.execute("SELECT count(*) FROM events WHERE type = 'invoice.issued'").fetchone()
    assert issued == (3,)


def test_totals_equal_the_sum_of_lines(conn: Connection[Any]) -> None:
    c = subscribed_customer(conn, "sums", plan="proactive", starts_at=at(7, 13), assets=3)
    change_plan(conn, c.subscription_id, "monitor", at(19, 5))
    invoice = _invoice_of(_close(conn), c.customer_id)
    lines = lines_of(conn, invoice.id)
    assert len(lines) == 6 == invoice.line_count
    assert invoice.total_minor == sum(r["amount_minor"] for r in lines)
    # the database checks it at commit: a line slipped in without the total is refused
    conn.execute(
        "INSERT INTO invoice_lines (invoice_id, line_no, kind, description, quantity, unit,"
        " unit_price_minor, amount_minor) VALUES (%s, 99, 'parts', 'x', 1, 'pcs', 5, 5)",
        (invoice.id,),
    )
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.commit()
    conn.execute("UPDATE invoices SET total_minor = total_minor + 1 WHERE id = %s", (invoice.id,))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.commit()


def test_issue_emits_the_event_in_the_same_transaction_and_guards_the_flow(
    conn: Connection[Any],
) -> None:
    c = subscribed_customer(conn, "flow", plan="proactive", starts_at=NOV_1)
    draft = _invoice_of(_close(conn), c.customer_id)
    billing.issue_invoice(conn, OPERATOR, draft.id, AFTER_NOV)
    conn.rollback()  # the issuing transaction fails: no event escapes
    assert conn.execute("SELECT count(*) FROM events WHERE type = 'invoice.issued'").fetchone() == (
        0,
    )
    issued = billing.issue_invoice(conn, OPERATOR, draft.id, AFTER_NOV)
    conn.commit()
    row = conn.execute(
        "SELECT customer_id, subject, payload FROM events WHERE type = 'invoice.issued'"
    ).fetchone()
    assert row is not None
    assert row[0] == c.customer_id and row[1] == f"invoice:{draft.id}"
    assert row[2]["invoice"]["total_minor"] == 2900 and len(row[2]["invoice"]["lines"]) == 1
    # the payload is the catalogue's (docs/events.md); the proposed flat shape of the first
    # catalogue, or a number given as a string, is refused by the check
    assert check_back_office_events(conn) == {"subscription.created", "invoice.issued"}
    with pytest.raises(ValidationError):
        validate_payload("invoice.issued", {"invoice_id": draft.id, "number": "INV-1"})
    wrong = {"invoice": {**row[2]["invoice"], "total_minor": "2900"}}
    with pytest.raises(ValidationError):
        EVENT_TYPES["invoice.issued"].payload.model_validate_json(json.dumps(wrong), strict=True)
    with pytest.raises(Conflict):
        billing.issue_invoice(conn, OPERATOR, issued.id, AFTER_NOV)
    conn.rollback()
    paid = billing.pay_invoice(conn, OPERATOR, issued.id, AFTER_NOV)
    assert paid.status == "paid"
    with pytest.raises(Conflict):
        billing.void_invoice(conn, OPERATOR, issued.id, "too late", AFTER_NOV)
    conn.commit()
    # the database refuses a status jump the service would never make
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE invoices SET status = 'draft' WHERE id = %s", (issued.id,))
    conn.rollback()


def test_worker_closes_last_months_and_issues_after_grace(
    db_url: str, conn: Connection[Any]
) -> None:
    # subscribed since October: the worker (started on 2 December) catches up October too
    c = subscribed_customer(conn, "worker", plan="proactive", starts_at=at(1, month=10))
    clock = ManualClock(at(2, month=12))
    stop = threading.Event()
    stats = BillingStats()
    thread = threading.Thread(
        target=run_billing_worker,
        args=(db_url,),
        kwargs={
            "stop": stop,
            "clock": clock,
            "interval": 0.05,
            "grace": timedelta(days=3),
            "stats": stats,
        },
    )

    def statuses() -> list[tuple[str, str]]:
        rows = conn.execute(
            "SELECT period, status FROM invoices WHERE customer_id = %s ORDER BY period",
            (c.customer_id,),
        ).fetchall()
        conn.rollback()
        return [(r[0], r[1]) for r in rows]

    def wait_for_runs(more: int) -> None:
        target = stats.runs + more
        pause = threading.Event()
        for _ in range(400):
            if stats.runs >= target:
                return
            pause.wait(0.05)
        raise AssertionError("the billing worker did not run")

    thread.start()
    try:
        assert stats.ran.wait(10)
        # October is past its grace: issued; November is within it: a draft
        assert statuses() == [("2026-10", "issued"), ("2026-11", "draft")]
        clock.set(at(4, 1, month=12))
        wait_for_runs(2)
        assert statuses() == [("2026-10", "issued"), ("2026-11", "issued")]
    finally:
        stop.set()
        thread.join(timeout=10)
    assert stats.errors == 0 and stats.failures == 0
    issued = conn.execute(
        "SELECT count(*) FROM events WHERE type = 'invoice.issued' AND customer_id = %s",
        (c.customer_id,),
    ).fetchone()
    assert issued == (2,)


def test_site_subscription_prorates_assets_installed_or_retired_mid_period(
    conn: Connection[Any],
) -> None:
    c = subscribed_customer(conn, "site-wide", plan="proactive", starts_at=at(1, month=10))
    [old] = c.asset_ids
    fresh = fleet.create_asset(
        conn,
        OPERATOR,
        AssetCreate(
            customer_id=c.customer_id,
            site_id=c.site_id,
            kind="elevator",
            ref="LIFT-1",
            installed_at=at(11),
        ),
    ).id
    sub = subscriptions.create_subscription(
        conn,
        OPERATOR,
        SubscriptionCreate(
            customer_id=c.customer_id,
            plan_id=plan_id(conn, "monitor"),
            scope="site",
            site_id=c.site_id,
            starts_at=NOV_1,
        ),
        ManualClock(NOV_1),
    )
    # the tire leaves service on the 21st (set directly: retire_asset stamps the wall clock)
    conn.execute("UPDATE assets SET retired_at = %s WHERE id = %s", (at(21), old))
    conn.commit()
    invoice = _invoice_of(_close(conn), c.customer_id)
    fees = {
        (r["asset_id"], r["plan_id"]): r["amount_minor"]
        for r in lines_of(conn, invoice.id)
        if r["kind"] == "base_fee"
    }
    monitor, proactive = plan_id(conn, "monitor"), plan_id(conn, "proactive")
    # Proactive on the listed tire until it retired: 20 of 30 days of 2900
    assert fees[(old, proactive)] == 1933
    # Monitor on the whole site: the tire for 20 days, the lift from the 11th (20 days) of 900
    assert fees[(old, monitor)] == 600 and fees[(fresh, monitor)] == 600
    assert len(fees) == 3 and sub.scope == "site"
