"""Parts and labour on invoices, partner statements and plan advice, from real orders."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import Connection

from fleetcare.clock import ManualClock
from maintenance.billing import advice as billing_advice
from maintenance.billing import service as billing
from maintenance.orders import service as orders
from maintenance.orders.schemas import CompleteRequest, OrderCreate, PartUse
from maintenance.partners import service as partners
from maintenance.partners.schemas import PartnerCreate
from tests.fixtures.billing import (
    OPERATOR,
    Customer,
    add_counter,
    at,
    lines_of,
    plan_id,
    subscribed_customer,
)

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")

TIRE = "TIRE-315-80R22.5"
AFTER_NOV = ManualClock(at(3, month=12))


def _complete_order(conn: Connection[Any], c: Customer, quantity: int = 2) -> int:
    """A manual order raised on the 10th and completed on the 12th with ``quantity`` tires."""
    order = orders.create_manual_order(
        conn,
        OPERATOR,
        OrderCreate(asset_id=c.asset_ids[0], component="tire", due_at=at(20), ship_parts=False),
        ManualClock(at(10)),
    )
    orders.complete_order(
        conn,
        OPERATOR,
        order.id,
        CompleteRequest(parts_used=[PartUse(sku=TIRE, quantity=quantity)]),
        ManualClock(at(12)),
    )
    conn.commit()
    return order.id


def test_parts_and_labour_the_plan_does_not_include(conn: Connection[Any]) -> None:
    proactive = subscribed_customer(conn, "parts-pro", plan="proactive", starts_at=at(1))
    full = subscribed_customer(conn, "parts-full", plan="full-service-tire", starts_at=at(1))
    order_id = _complete_order(conn, proactive)
    # the full-service tire is replaced on the 12th: its odometer restarts at 0, and the first
    # reading after (600) is a reset although it is more than half the old value
    add_counter(conn, full.asset_ids[0], [(at(1), 0.0), (at(11), 1_000.0)])
    _complete_order(conn, full)
    add_counter(conn, full.asset_ids[0], [(at(13), 600.0), (at(20), 900.0)])
    result = billing.close_period(conn, "2026-11", AFTER_NOV)
    conn.commit()
    by_customer = {i.customer_id: i for i in result.invoices}
    lines = lines_of(conn, by_customer[proactive.customer_id].id)
    # Proactive includes orders but not parts or labour: 2 tires at 450.00, 2 x 0.75 h at 90.00
    assert [(r["kind"], r["quantity"], r["amount_minor"]) for r in lines] == [
        ("base_fee", lines[0]["quantity"], 2900),
        ("parts", 2, 90_000),
        ("labour", 1.5, 13_500),
    ]
    assert by_customer[proactive.customer_id].total_minor == 2900 + 90_000 + 13_500
    row = conn.execute(
        "SELECT order_id FROM invoice_lines WHERE kind = 'parts' AND invoice_id = %s",
        (by_customer[proactive.customer_id].id,),
    ).fetchone()
    assert row == (order_id,)
    # full service includes both: only usage, 1000 + 600 + 300 km at 400 per 1000 km
    usage = lines_of(conn, by_customer[full.customer_id].id)
    assert [(r["kind"], r["quantity"], r["amount_minor"]) for r in usage] == [("usage", 1900, 760)]


def test_partner_statement_per_period(conn: Connection[Any]) -> None:
    partner = partners.create_partner(
        conn,
        OPERATOR,
        PartnerCreate(code="west-tyres", name="West tyres", regions=["west"], commission_bps=500),
    )
    other = partners.create_partner(
        conn, OPERATOR, PartnerCreate(code="east", name="East", regions=["east"])
    )
    conn.commit()
    west = subscribed_customer(conn, "stmt-west", plan="proactive", starts_at=at(1), region="west")
    order_id = _complete_order(conn, west)
    statement = billing.partner_statement(conn, OPERATOR, partner.id, "2026-11")
    [line] = statement.lines
    # basis: 2 tires (90000) + 1.5 h at 9000 (13500); 5 % of it
    assert (line.order_id, line.basis_minor, line.amount_minor) == (order_id, 103_500, 5_175)
    assert [(t.currency, t.orders, t.amount_minor) for t in statement.totals] == [("EUR", 1, 5_175)]
    assert billing.partner_statement(conn, OPERATOR, partner.id, "2026-12").lines == []
    assert billing.partner_statement(conn, OPERATOR, other.id, "2026-11").lines == []


def test_plan_advice_prices_real_usage_and_orders_on_every_plan(conn: Connection[Any]) -> None:
    c = subscribed_customer(conn, "advice", plan="proactive", starts_at=at(1, month=10))
    add_counter(
        conn,
        c.asset_ids[0],
        [(at(30, month=9), 0.0), (at(31, 12, month=10), 10_000.0), (at(20), 15_000.0)],
    )
    _complete_order(conn, c)
    advice = billing_advice.plan_advice(conn, OPERATOR, c.customer_id, 2, AFTER_NOV)
    assert advice.periods == ["2026-10", "2026-11"]
    [sub] = advice.subscriptions
    options = {o.plan_code: o for o in sub.options}
    # only plans that cover tires are offered
    assert set(options) == {"monitor", "proactive", "full-service-tire"}
    assert options["proactive"].cost_minor == 2 * 2900 + 90_000 + 13_500
    assert options["monitor"].cost_minor == 2 * 900 + 90_000 + 13_500
    # 15000 km at 400 per 1000 km; parts and labour included
    full = options["full-service-tire"]
    assert (full.cost_minor, full.usage_minor, full.parts_minor) == (6_000, 6_000, 0)
    assert full.by_period == {"2026-10": 4_000, "2026-11": 2_000}
    assert sub.current_plan_ids == [plan_id(conn, "proactive")]
    assert sub.current_cost_minor == options["proactive"].cost_minor
    assert sub.best_plan_id == full.plan_id
    assert full.saving_minor == sub.current_cost_minor - 6_000
    assert sub.options[0].plan_code == "full-service-tire"
