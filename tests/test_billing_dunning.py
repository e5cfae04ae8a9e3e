"""Dunning: due dates from the plan's payment terms, reminders on the plan's schedule (once,
even with two workers), past due and automatic orders paused after the plan's days (the
policy alerts instead of ordering), payments (part, duplicate, over), and payment restores
everything. Every step is an event."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from fleetcare.errors import Conflict, Invalid
from maintenance.billing import service as billing
from maintenance.dunning import service as dunning
from maintenance.dunning.schemas import PaymentCreate
from maintenance.policy import service as policy
from maintenance.subscriptions import service as subscriptions
from tests.fixtures.maintenance import (
    OPERATOR,
    event_types,
    insert_prediction,
    make_world,
    stock_depot,
)

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")


def _at(month: int, day: int, year: int = 2027) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def _dun(conn: Connection[Any], when: datetime) -> Any:
    run = dunning.run_dunning(conn, ManualClock(when))
    conn.commit()
    return run


def _orders(conn: Connection[Any], asset_id: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM maintenance_orders WHERE asset_id = %s", (asset_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_late_payment_is_dunned_on_the_plans_schedule_and_payment_restores(
    conn: Connection[Any], db_url: str
) -> None:
    # Proactive states: 30 days to pay, reminders 3, 10, 20 days late, past due after 15,
    # automatic orders paused after 30
    world = make_world(conn, "dunned")
    stock_depot(conn, "NEAR", on_hand=3, shipping_days=2, latitude=50.1, longitude=4.1)
    issued_at = datetime(2026, 12, 3, tzinfo=UTC)
    result = billing.close_period(conn, "2026-11", ManualClock(issued_at), issue=True)
    conn.commit()
    [invoice] = [i for i in result.invoices if i.customer_id == world.customer_id]
    assert invoice.payment_terms_days == 30
    assert invoice.due_at == issued_at + timedelta(days=30)  # 2 January 2027

    assert _dun(conn, _at(1, 4)).reminders == 0  # 2 days late
    # two workers at once on day 3: one reminder
    runs: list[int] = []

    def worker() -> None:
        with connect(db_url) as c2:
            runs.append(dunning.run_dunning(c2, ManualClock(_at(1, 5))).reminders)
            c2.commit()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(runs) == [0, 1]
    assert _dun(conn, _at(1, 6)).reminders == 0
    assert _dun(conn, _at(1, 12)).reminders == 1  # day 10
    # day 15: past due (service continues), day 20: the third reminder
    run = _dun(conn, _at(1, 17))
    assert (run.reminders, run.past_due, run.orders_paused) == (0, 1, 0)
    assert _dun(conn, _at(1, 22)).reminders == 1
    sub = subscriptions.subscription_by_id(conn, world.subscription_id or 0)
    assert sub.status == "past_due" and sub.orders_paused_at is None
    # day 30: automatic orders pause; the policy alerts instead of ordering
    assert _dun(conn, _at(2, 1)).orders_paused == 1
    insert_prediction(conn, world.asset_id, time=_at(2, 2), due_in_days=10)
    assert policy.process_queue(conn, ManualClock(_at(2, 2))) == 1
    conn.commit()
    assert _orders(conn, world.asset_id) == 0
    alert = conn.execute(
        "SELECT payload FROM events WHERE type = 'prediction.alert' AND customer_id = %s",
        (world.customer_id,),
    ).fetchone()
    assert alert is not None and alert[0]["orders_paused"] is True

    # a part payment changes nothing yet; the rest restores everything
    half = invoice.gross_minor // 2
    clock = ManualClock(_at(2, 3))
    dunning.record_payment(
        conn, OPERATOR, invoice.id, PaymentCreate(amount_minor=half, reference="BANK-1"), clock
    )
    conn.commit()
    assert subscriptions.subscription_by_id(conn, sub.id).status == "past_due"
    with pytest.raises(Conflict) as duplicate:
        dunning.record_payment(
            conn, OPERATOR, invoice.id, PaymentCreate(amount_minor=1, reference="BANK-1"), clock
        )
    assert duplicate.value.code == "duplicate_payment"
    conn.rollback()
    with pytest.raises(Invalid) as over:
        dunning.record_payment(
            conn,
            OPERATOR,
            invoice.id,
            PaymentCreate(amount_minor=invoice.gross_minor, reference="BANK-2"),
            clock,
        )
    assert over.value.code == "overpayment"
    conn.rollback()
    rest = invoice.gross_minor - half
    paid = dunning.record_payment(
        conn, OPERATOR, invoice.id, PaymentCreate(amount_minor=rest, reference="BANK-2"), clock
    )
    conn.commit()
    assert paid.invoice.status == "paid" and paid.invoice.paid_minor == invoice.gross_minor
    restored = subscriptions.subscription_by_id(conn, sub.id)
    assert restored.status == "active" and restored.orders_paused_at is None
    # orders again: the next prediction raises one
    insert_prediction(conn, world.asset_id, time=_at(2, 4), due_in_days=10)
    assert policy.process_queue(conn, ManualClock(_at(2, 4))) == 1
    conn.commit()
    assert _orders(conn, world.asset_id) == 1
    # every step was an event, and the history shows the past-due stretch
    types = [
        t
        for t in event_types(conn, world.customer_id)
        if t.split(".")[0] in {"invoice", "subscription"}
    ]
    assert types[types.index("invoice.issued") :] == [
        "invoice.issued",
        "invoice.payment_reminder",
        "invoice.payment_reminder",
        "subscription.past_due",
        "invoice.payment_reminder",
        "subscription.orders_paused",
        "invoice.payment_recorded",
        "invoice.payment_recorded",
        "invoice.paid",
        "subscription.orders_resumed",
        "subscription.activated",
    ]
    history = subscriptions.status_history(conn, sub.id)
    assert [(h.status, h.reason) for h in history][-2:] == [
        ("past_due", "dunning"),
        ("active", "payment_received"),
    ]
    assert [s.step for s in dunning.list_steps(conn, OPERATOR, invoice.id)] == [
        "reminder:3",
        "reminder:10",
        f"past_due:{sub.id}",
        "reminder:20",
        f"orders_paused:{sub.id}",
    ]


def test_payment_api_refuses_bad_input_with_problem_documents(
    client: TestClient, operator_headers: dict[str, str], db_url: str
) -> None:
    with connect(db_url) as conn:
        world = make_world(conn, "pay-api")
        result = billing.close_period(
            conn, "2026-11", ManualClock(datetime(2026, 12, 3, tzinfo=UTC)), issue=True
        )
        conn.commit()
    [invoice] = [i for i in result.invoices if i.customer_id == world.customer_id]
    url = f"/v1/invoices/{invoice.id}/payments"
    for body, status, code in [
        ({"amount_minor": 0, "reference": "x"}, 422, None),
        ({"amount_minor": 10, "reference": ""}, 422, None),
        ({"amount_minor": "ten", "reference": "x"}, 422, None),
        ({"amount_minor": 10**9, "reference": "x"}, 422, "overpayment"),
        (
            {
                "amount_minor": 10,
                "reference": "x",
                "received_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
            },
            422,
            "payment_in_future",
        ),
    ]:
        response = client.post(url, json=body, headers=operator_headers)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        if code:
            assert response.json()["code"] == code
    ok = client.post(
        url,
        json={"amount_minor": invoice.gross_minor, "reference": "wire-1"},
        headers=operator_headers,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["invoice"]["status"] == "paid"
    again = client.post(
        url, json={"amount_minor": 1, "reference": "wire-2"}, headers=operator_headers
    )
    assert again.status_code == 409 and again.json()["code"] == "invoice_not_payable"
    listed = client.get(url, headers=operator_headers).json()
    assert [p["reference"] for p in listed] == ["wire-1"]
    assert client.get("/v1/invoices/999999/payments", headers=operator_headers).status_code == 404


def test_a_correction_lowers_what_is_due(conn: Connection[Any]) -> None:
    from maintenance.documents import service as documents
    from maintenance.documents.schemas import CorrectionRequest, CreditLineRequest

    world = make_world(conn, "corrected")
    issued_at = datetime(2026, 12, 3, tzinfo=UTC)
    [invoice] = [
        i
        for i in billing.close_period(conn, "2026-11", ManualClock(issued_at), issue=True).invoices
        if i.customer_id == world.customer_id
    ]
    conn.commit()
    note = documents.correct_invoice(
        conn,
        OPERATOR,
        invoice.id,
        CorrectionRequest(
            reason="goodwill", lines=[CreditLineRequest(line_no=1, amount_minor=100)]
        ),
        ManualClock(issued_at),
    )
    conn.commit()
    due = invoice.gross_minor - (note.total_minor + note.tax_minor)
    clock = ManualClock(_at(1, 10))
    [reminder] = [e for e in dunning.run_dunning(conn, clock).steps if e.step == "reminder:3"]
    conn.commit()
    payload = conn.execute(
        "SELECT payload FROM events WHERE type = 'invoice.payment_reminder' AND subject = %s",
        (f"invoice:{invoice.id}",),
    ).fetchone()
    assert payload is not None and payload[0]["amount_due_minor"] == due
    with pytest.raises(Invalid):
        dunning.record_payment(
            conn, OPERATOR, invoice.id, PaymentCreate(amount_minor=due + 1, reference="W"), clock
        )
    conn.rollback()
    paid = dunning.record_payment(
        conn, OPERATOR, invoice.id, PaymentCreate(amount_minor=due, reference="W"), clock
    )
    conn.commit()
    assert paid.invoice.status == "paid" and reminder.days_overdue == 8
