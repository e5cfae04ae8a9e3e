"""The live path of the sender: it keeps an endpoint while deliveries keep coming, wakes on
``NOTIFY fleetcare_webhooks`` (payload: the endpoint with a delivery due), and a notification
for an endpoint one of its loops holds wakes nobody and is not lost."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import Connection
from psycopg_pool import ConnectionPool

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.clock import ManualClock
from fleetcare.db import connect, open_pool
from fleetcare.settings import Settings
from maintenance.events import service as events
from maintenance.webhooks import service
from maintenance.webhooks.schemas import EndpointCreate, NewEndpoint, ReplayEvent
from maintenance.webhooks.worker import CHANNEL, Holdings, WebhookSender, run_webhook_senders
from tests.fixtures.webhook_receiver import Received, Receiver, Reply

OPERATOR = Principal(key_id=0, role="operator")


@pytest.fixture
def customer_id(conn: Connection[Any]) -> int:
    c = fleet.ensure_customer(conn, f"live-co-{uuid.uuid4().hex[:8]}", "Live Co")
    conn.commit()
    return c.id


def add_endpoint(conn: Connection[Any], customer_id: int, url: str) -> NewEndpoint:
    ep = service.create_endpoint(
        conn, OPERATOR, EndpointCreate(customer_id=customer_id, url=url), allow_private=True
    )
    conn.commit()
    return ep


def emit(conn: Connection[Any], customer_id: int, n: int, start: int) -> list[str]:
    ids = []
    for i in range(start, start + n):
        ev = events.emit(
            conn, "order.created", {"order_id": i}, customer_id=customer_id, subject=f"order:{i}"
        )
        conn.commit()
        ids.append(ev.public_id)
    return ids


def test_a_sender_keeps_its_endpoint_while_deliveries_keep_coming(
    db_url: str,
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    pool: ConnectionPool[Connection[Any]],
) -> None:
    add_endpoint(conn, customer_id, receiver.url)
    first = emit(conn, customer_id, 2, start=1)
    later: list[str] = []

    def commit_more_while_the_first_is_received(_got: Received) -> Reply:
        # committed before the receiver answers, so before the sender reads its next batch
        if not later:
            with connect(db_url) as c:
                later.extend(emit(c, customer_id, 3, start=10))
        return Reply()

    receiver.reply_for = commit_more_while_the_first_is_received
    sender = WebhookSender(
        pool,
        allow_private=True,
        clock=ManualClock(datetime.now(UTC)),
        rng=random.Random(7),
        budget_s=600,  # the test is about batches, not time
    )
    try:
        ran = sender.work()
    finally:
        sender.close()
    assert ran.done == 5 and not ran.more
    assert [r.webhook_id for r in receiver.wait_for(5)] == first + later  # in event order
    # one claim found the endpoint; its second batch came with the first's record; the claim
    # made when it had nothing more due found nothing
    assert (sender.batches, sender.claims, sender.idle_claims) == (2, 2, 1)
    row = conn.execute(
        "SELECT locked_by, count(*) FILTER (WHERE d.status = 'delivered') FROM webhook_endpoints e"
        " JOIN webhook_deliveries d ON d.endpoint_id = e.id WHERE e.customer_id = %s GROUP BY 1",
        (customer_id,),
    ).fetchone()
    conn.commit()
    assert row == (None, 5)  # recorded, and the lease let go


def test_due_deliveries_notify_their_endpoint(
    db_url: str, conn: Connection[Any], customer_id: int, receiver: Receiver
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    with connect(db_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")

        def payloads() -> list[str]:
            return [n.payload for n in listener.notifies(timeout=2.0)]

        (event_id,) = emit(conn, customer_id, 1, start=1)  # the outbox's fan-out
        assert payloads() == [str(ep.id)]
        pool = open_pool(db_url, name="webhooks-live-notify")
        sender = WebhookSender(pool, allow_private=True)
        try:
            assert sender.drain() == 1
        finally:
            sender.close()
            pool.close()
        assert payloads() == []  # recording a delivery done notifies nobody
        service.replay_event(conn, OPERATOR, event_id, ReplayEvent(endpoint_id=ep.id))
        conn.commit()
        assert payloads() == [str(ep.id)]  # a replay is due at once
        service.send_test_ping(conn, OPERATOR, ep.id)
        conn.commit()
        assert payloads() == [str(ep.id)]


def test_holdings_wake_for_endpoints_nobody_holds_and_remember_the_others() -> None:
    h = Holdings()
    assert h.wake("7") and h.wake("not a number")
    h.hold(7)
    assert not h.wake("7")  # its holder will read it
    assert h.wake("8")
    h.look(7)  # the holder reads its due deliveries: what was named before is in that read
    assert not h.let_go(7)
    h.hold(7)
    h.look(7)
    assert not h.wake("7")  # named after the holder's last read...
    assert h.let_go(7)  # ...so letting go says: look again
    assert h.wake("7")


def test_a_stream_to_one_endpoint_is_delivered_in_order_by_a_sender_process_worth(
    db_url: str, conn: Connection[Any], customer_id: int, receiver: Receiver, settings: Settings
) -> None:
    add_endpoint(conn, customer_id, receiver.url)
    stop = threading.Event()
    ready = threading.Event()
    worker = threading.Thread(
        target=run_webhook_senders,
        args=(db_url, settings),
        # an hour's poll: only notifications (and the holder's own reads) can deliver
        kwargs={"stop": stop, "concurrency": 4, "poll_s": 3600.0, "on_ready": ready.set},
    )
    worker.start()
    try:
        assert ready.wait(10)
        ids = emit(conn, customer_id, 60, start=1)
        got = [r.webhook_id for r in receiver.wait_for(60, timeout=30)]
        assert got == ids  # each once, in event order
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
