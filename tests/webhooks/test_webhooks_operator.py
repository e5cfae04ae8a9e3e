"""The operator's own webhook endpoints: the events that have no customer (the operator's and
partners' people, ...) reach them, signed with their secret, and no customer's endpoint; a
customer can neither make one nor see it."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection
from psycopg_pool import ConnectionPool
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.clock import ManualClock
from fleetcare.errors import Forbidden, Invalid, NotFound
from maintenance.events import service as events
from maintenance.webhooks import service
from maintenance.webhooks.schemas import EndpointCreate
from maintenance.webhooks.worker import WebhookSender
from people import service as people
from tests.fixtures.webhook_receiver import Receiver

OPERATOR = Principal(key_id=0, role="operator")


def test_events_without_a_customer_reach_the_operators_endpoint_only(
    conn: Connection[Any], pool: ConnectionPool[Connection[Any]], receiver: Receiver
) -> None:
    tag = uuid.uuid4().hex[:8]
    acme = fleet.ensure_customer(conn, f"acme-{tag}", "Acme")
    conn.commit()
    mine = service.create_endpoint(
        conn,
        OPERATOR,
        EndpointCreate(url=receiver.url, operator_events=True, event_types=["user.*"]),
        allow_private=True,
    )
    theirs = service.create_endpoint(
        conn, OPERATOR, EndpointCreate(url=receiver.url, customer_id=acme.id), allow_private=True
    )
    conn.commit()
    assert mine.customer_id is None and theirs.customer_id == acme.id

    # an operator's person and a partner's person invited (no customer), a customer's event
    staff, staff_link = people.add_user_from_cli(
        conn,
        email=f"ops-{tag}@example.com",
        name="Ops",
        role="dispatcher",
        customer_slug=None,
        partner_code=None,
        password=None,
        public_url="https://fleetcare.example",
    )
    conn.execute("INSERT INTO partners (code, name) VALUES (%s, 'Fix')", (f"fix-{tag}",))
    technician, _ = people.add_user_from_cli(
        conn,
        email=f"tech-{tag}@example.com",
        name="Tech",
        role="technician",
        customer_slug=None,
        partner_code=f"fix-{tag}",
        password=None,
        public_url="https://fleetcare.example",
    )
    events.emit(
        conn,
        "order.created",
        {"order_id": 1, "asset_id": 1, "asset_ref": "A", "component": "c", "status": "open"},
        customer_id=acme.id,
    )
    conn.commit()

    sender = WebhookSender(
        pool,
        allow_private=True,
        clock=ManualClock(datetime.now(UTC)),
        timeout_s=0.5,
        rng=random.Random(7),
    )
    try:
        assert sender.drain() == 3
    finally:
        sender.close()
    got = receiver.wait_for(3)
    signed_by_mine = []
    for request in got:
        try:
            signed_by_mine.append(Webhook(mine.secret).verify(request.body, request.headers))
        except WebhookVerificationError:  # signed with the customer's endpoint's secret
            payload = Webhook(theirs.secret).verify(request.body, request.headers)
            assert payload["type"] == "order.created"
    by_user = {p["data"]["user_id"]: p for p in signed_by_mine}
    assert set(by_user) == {staff.id, technician.id}
    assert {p["type"] for p in signed_by_mine} == {"user.invited"}
    assert by_user[staff.id]["data"]["organisation"] == "operator"
    assert by_user[staff.id]["data"]["link"] == staff_link
    assert by_user[technician.id]["data"]["organisation"] == "partner"


def test_only_the_operator_has_an_endpoint_for_events_without_a_customer(
    conn: Connection[Any], client: TestClient, operator_headers: dict[str, str], receiver: Receiver
) -> None:
    tag = uuid.uuid4().hex[:8]
    acme = fleet.ensure_customer(conn, f"acme-{tag}", "Acme")
    conn.commit()
    customer = Principal(key_id=1, role="customer", customer_id=acme.id)
    with pytest.raises(Forbidden):
        service.create_endpoint(
            conn,
            customer,
            EndpointCreate(url=receiver.url, operator_events=True),
            allow_private=True,
        )
    conn.rollback()
    with pytest.raises(Invalid):
        service.create_endpoint(
            conn,
            OPERATOR,
            EndpointCreate(url=receiver.url, operator_events=True, customer_id=acme.id),
            allow_private=True,
        )
    conn.rollback()
    made = client.post(
        "/v1/webhooks/endpoints",
        json={"url": receiver.url, "operator_events": True},
        headers=operator_headers,
    )
    assert made.status_code == 201, made.text
    assert made.json()["customer_id"] is None
    with pytest.raises(NotFound):
        service.get_endpoint(conn, customer, made.json()["id"])
    conn.rollback()
    # without operator_events, the operator still names the customer
    r = client.post("/v1/webhooks/endpoints", json={"url": receiver.url}, headers=operator_headers)
    assert r.status_code == 422, r.text
