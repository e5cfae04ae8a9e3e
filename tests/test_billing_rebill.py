"""Billing a period again: a void lets the next explicit close bill a replacement under a new
number (the worker does not); the void's service credits come back once; a void is refused
while later invoices depend on it; a re-billing correction bills the credited charges again,
recomputed, on a supplementary invoice; the routes answer another customer with 404."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from fleetcare.clock import ManualClock
from fleetcare.errors import Conflict, Invalid
from maintenance.billing import service as billing
from maintenance.documents import service as documents
from maintenance.documents.schemas import CorrectionRequest, CreditLineRequest
from tests.conftest import Tenant
from tests.fixtures.billing import OPERATOR, add_counter, at, lines_of, subscribed_customer
from tests.test_dashboard import sign_in

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")

AFTER_NOV = ManualClock(at(3, month=12))
AFTER_DEC = ManualClock(at(3, month=1, year=2027))


def _close(conn: Connection[Any], period: str = "2026-11", clock: ManualClock = AFTER_NOV) -> Any:
    result = billing.close_period(conn, period, clock, issue=True)
    conn.commit()
    assert result.failures == []
    return result.invoices


def _mine(invoices: list[Any], customer_id: int) -> list[Any]:
    return sorted((i for i in invoices if i.customer_id == customer_id), key=lambda i: i.id)


def _usage(conn: Connection[Any], customer_id: int, period: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT quantity, billed_quantity, billed_amount_minor, invoice_id FROM usage_records"
        " WHERE customer_id = %s AND period = %s ORDER BY asset_id",
        (customer_id, period),
    ).fetchall()


def test_a_void_lets_the_next_close_bill_a_replacement(conn: Connection[Any]) -> None:
    c = subscribed_customer(conn, "rebill-a", plan="full-service-tire", starts_at=at(1))
    add_counter(conn, c.asset_ids[0], [(at(2), 1000.0), (at(28), 3500.0)])
    [first] = _mine(_close(conn), c.customer_id)
    assert _usage(conn, c.customer_id, "2026-11")[0][1:] == (2500, 1000, first.id)
    billing.void_invoice(conn, OPERATOR, first.id, "meter read twice", AFTER_NOV)
    conn.commit()
    # the void unbilled the usage; the billing worker does not bill the month again by itself
    assert _usage(conn, c.customer_id, "2026-11")[0][1:] == (None, None, None)
    worker = billing.bill_due_periods(conn, ManualClock(at(5, month=12)), timedelta(days=2))
    conn.commit()
    assert all(i.customer_id != c.customer_id for r in worker for i in r.invoices)
    # an explicit close bills it again: a new invoice, a new number, the void one stays void
    [second] = _mine(_close(conn), c.customer_id)
    assert second.id != first.id and second.status == "issued"
    assert second.replaces_invoice_id == first.id and second.rebills_credit_note_id is None
    assert second.number is not None and first.number is not None
    assert second.number > first.number
    statuses = conn.execute(
        "SELECT id, status FROM invoices WHERE customer_id = %s ORDER BY id", (c.customer_id,)
    ).fetchall()
    assert statuses == [(first.id, "void"), (second.id, "issued")]
    assert [(r["kind"], r["amount_minor"]) for r in lines_of(conn, second.id)] == [
        (r["kind"], r["amount_minor"]) for r in lines_of(conn, first.id)
    ]
    assert _usage(conn, c.customer_id, "2026-11")[0][1:] == (2500, 1000, second.id)
    # closing once more finds the replacement; December bills no late usage twice
    assert _mine(_close(conn), c.customer_id) == [second]
    add_counter(conn, c.asset_ids[0], [(at(2, month=12), 3600.0), (at(28, month=12), 4600.0)])
    [dec] = _mine(_close(conn, "2026-12", AFTER_DEC), c.customer_id)
    assert [r["kind"] for r in lines_of(conn, dec.id)] == ["usage"]


def test_a_void_is_refused_while_a_later_invoice_charged_its_late_usage(
    conn: Connection[Any],
) -> None:
    c = subscribed_customer(conn, "rebill-b", plan="full-service-tire", starts_at=at(1))
    add_counter(conn, c.asset_ids[0], [(at(2), 1000.0), (at(20), 2000.0)])
    [nov] = _mine(_close(conn), c.customer_id)
    # November's last readings arrive late: December's invoice charges them
    add_counter(conn, c.asset_ids[0], [(at(29), 2500.0), (at(28, month=12), 3000.0)])
    [dec] = _mine(_close(conn, "2026-12", AFTER_DEC), c.customer_id)
    assert "usage_adjustment" in [r["kind"] for r in lines_of(conn, dec.id)]
    with pytest.raises(Conflict, match=f"invoice {dec.id}.*late usage"):
        billing.void_invoice(conn, OPERATOR, nov.id, "x", AFTER_DEC)
    conn.rollback()
    # voiding December first, then November, works; closing both again bills each once
    billing.void_invoice(conn, OPERATOR, dec.id, "x", AFTER_DEC)
    billing.void_invoice(conn, OPERATOR, nov.id, "x", AFTER_DEC)
    conn.commit()
    [nov2] = _mine(_close(conn, "2026-11", AFTER_DEC), c.customer_id)
    [dec2] = _mine(_close(conn, "2026-12", AFTER_DEC), c.customer_id)
    assert [(r["kind"], r["quantity"]) for r in lines_of(conn, nov2.id)] == [("usage", 1500)]
    assert [(r["kind"], r["quantity"]) for r in lines_of(conn, dec2.id)] == [("usage", 500)]


def test_a_rebilling_correction_bills_the_lines_again_on_a_supplementary_invoice(
    conn: Connection[Any],
) -> None:
    c = subscribed_customer(conn, "rebill-c", plan="full-service-tire", starts_at=at(1), assets=2)
    add_counter(conn, c.asset_ids[0], [(at(2), 1000.0), (at(28), 3000.0)])
    add_counter(conn, c.asset_ids[1], [(at(2), 1000.0), (at(28), 2000.0)])
    [nov] = _mine(_close(conn), c.customer_id)
    lines = lines_of(conn, nov.id)
    usage = [r for r in lines if r["kind"] == "usage" and r["asset_id"] == c.asset_ids[0]]
    assert len(usage) == 1 and usage[0]["quantity"] == 2000
    # a partial amount, or a line that a close does not recompute, cannot be re-billed
    with pytest.raises(Invalid, match="in full"):
        documents.correct_invoice(
            conn, OPERATOR, nov.id,
            CorrectionRequest(reason="x", rebill=True,
                              lines=[CreditLineRequest(line_no=usage[0]["line_no"],
                                                       amount_minor=1)]),
            AFTER_NOV,
        )  # fmt: skip
    conn.rollback()
    # the tire's reading of the 28th was wrong: the operator corrects it, and asks for the
    # usage to be billed again
    conn.execute(
        "UPDATE telemetry SET value = 2600 WHERE asset_id = %s AND time = %s",
        (c.asset_ids[0], at(28)),
    )
    note = documents.correct_invoice(
        conn, OPERATOR, nov.id,
        CorrectionRequest(reason="odometer misread", rebill=True,
                          lines=[CreditLineRequest(line_no=usage[0]["line_no"])]),
        AFTER_NOV,
    )  # fmt: skip
    conn.commit()
    assert note.rebill and note.total_minor == usage[0]["amount_minor"] == 800
    invoices = _mine(_close(conn), c.customer_id)
    assert len(invoices) == 2 and invoices[0].id == nov.id
    supplementary = invoices[1]
    assert supplementary.rebills_credit_note_id == note.id
    assert supplementary.replaces_invoice_id == nov.id and supplementary.status == "issued"
    assert [(r["kind"], r["asset_id"], r["quantity"], r["amount_minor"])
            for r in lines_of(conn, supplementary.id)] == [
        ("usage", c.asset_ids[0], 1600, 640)
    ]  # fmt: skip
    # billed for November: the invoice, minus the note, plus the supplementary
    net = nov.total_minor - note.total_minor + supplementary.total_minor
    assert net == nov.total_minor - 800 + 640
    assert _usage(conn, c.customer_id, "2026-11")[0][1:3] == (1600, 640)
    # once answered, a close makes no other; December charges no late usage
    assert _mine(_close(conn), c.customer_id) == invoices[:1]
    assert conn.execute(
        "SELECT count(*) FROM invoices WHERE customer_id = %s", (c.customer_id,)
    ).fetchone() == (2,)
    [dec] = _mine(_close(conn, "2026-12", AFTER_DEC), c.customer_id)
    assert "usage_adjustment" not in [r["kind"] for r in lines_of(conn, dec.id)]
    # the corrected invoice cannot be voided while its supplementary one is live
    with pytest.raises(Conflict, match="bills again"):
        billing.void_invoice(conn, OPERATOR, nov.id, "x", AFTER_DEC)
    conn.rollback()


def test_rebill_routes_are_confined(
    client: TestClient,
    conn: Connection[Any],
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    client.app.state.clock = AFTER_NOV  # type: ignore[attr-defined]
    a, b = make_tenant("rebill-ra"), make_tenant("rebill-rb")
    ca = subscribed_customer(conn, "rebill-ra", plan="proactive", starts_at=at(1))
    [first] = _mine(_close(conn), ca.customer_id)
    voided = client.post(
        f"/v1/invoices/{first.id}/void", json={"reason": "wrong plan"}, headers=operator_headers
    )
    assert voided.status_code == 200, voided.text
    closed = client.post(
        "/v1/billing/close",
        json={"period": "2026-11", "customer_id": ca.customer_id, "issue": True},
        headers=operator_headers,
    )
    assert closed.status_code == 200, closed.text
    [replacement] = closed.json()["invoices"]
    assert replacement["replaces_invoice_id"] == first.id
    assert replacement["number"] != first.number
    own = client.get(f"/v1/invoices/{replacement['id']}", headers=a.headers)
    assert own.status_code == 200 and own.json()["replaces_invoice_id"] == first.id
    assert client.get(f"/v1/invoices/{replacement['id']}", headers=b.headers).status_code == 404
    sign_in(client, a.key)
    page = client.get(f"/dashboard/invoices/{replacement['id']}")
    assert page.status_code == 200 and 'id="invoice-replaces"' in page.text
    assert f'href="/dashboard/invoices/{first.id}"' in page.text
    sign_in(client, b.key)
    assert client.get(f"/dashboard/invoices/{replacement['id']}").status_code == 404
    client.cookies.clear()
    notes = client.get("/v1/credit-notes", headers=a.headers).json()["items"]
    assert [n["kind"] for n in notes] == ["void"]
    assert client.get(f"/v1/credit-notes/{notes[0]['id']}", headers=b.headers).status_code == 404
    bad = client.post(
        f"/v1/invoices/{replacement['id']}/credit-notes",
        json={"reason": "x", "rebill": True, "lines": [{"line_no": 1, "amount_minor": 5}]},
        headers=operator_headers,
    )
    assert bad.status_code == 422 and bad.json()["code"] == "rebill_needs_whole_line"
    assert (
        client.post(
            f"/v1/invoices/{replacement['id']}/credit-notes",
            json={"reason": "x", "rebill": True, "lines": [{"line_no": 1}]},
            headers=b.headers,
        ).status_code
        == 403
    )
