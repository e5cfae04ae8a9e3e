"""Delivery against a real local HTTP receiver and the real PostgreSQL, with a manual clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import Connection
from psycopg_pool import ConnectionPool
from standardwebhooks import Webhook

from fleet import service as fleet
from fleet.schemas import Principal
from fleetcare.clock import ManualClock
from fleetcare.db import connect, open_pool
from fleetcare.settings import Settings
from maintenance.events import service as events
from maintenance.webhooks import repository as repo
from maintenance.webhooks import service
from maintenance.webhooks.schemas import EndpointCreate, NewEndpoint, ReplayEvent, SecretRotation
from maintenance.webhooks.transport import WebhookTransport
from maintenance.webhooks.worker import WebhookSender, run_webhook_senders
from tests.fixtures.webhook_receiver import Receiver, Reply

OPERATOR = Principal(key_id=0, role="operator")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clock() -> ManualClock:
    # Real time, so that standardwebhooks' 5-minute timestamp tolerance holds until we move it.
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def make_sender(
    pool: ConnectionPool[Connection[Any]], clock: ManualClock
) -> Iterator[Callable[..., WebhookSender]]:
    made: list[WebhookSender] = []

    def make(**kw: Any) -> WebhookSender:
        options: dict[str, Any] = {
            "allow_private": True,
            "clock": clock,
            "timeout_s": 0.5,
            "rng": random.Random(7),
        }
        options.update(kw)
        sender = WebhookSender(pool, **options)
        made.append(sender)
        return sender

    yield make
    for s in made:
        s.close()


@pytest.fixture
def customer_id(conn: Connection[Any]) -> int:
    c = fleet.ensure_customer(conn, unique("hooks-co"), "Hooks Co")
    conn.commit()
    return c.id


def add_endpoint(conn: Connection[Any], customer_id: int, url: str, **kw: Any) -> NewEndpoint:
    ep = service.create_endpoint(
        conn,
        OPERATOR,
        EndpointCreate(customer_id=customer_id, url=url, **kw),
        allow_private=True,
    )
    conn.commit()
    return ep


def emit_orders(conn: Connection[Any], customer_id: int, n: int, start: int = 1) -> list[str]:
    """n order.created events, each in its own committed transaction; their webhook-ids."""
    ids = []
    for i in range(start, start + n):
        ev = events.emit(
            conn,
            "order.created",
            {
                "order_id": i,
                "asset_id": 1,
                "asset_ref": "TRK-1",
                "component": "tread",
                "status": "open",
            },
            customer_id=customer_id,
            subject=f"order:{i}",
        )
        conn.commit()
        ids.append(ev.public_id)
    return ids


def verify_by_hand(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """An independent check of webhook-signature (no timestamp tolerance)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(sig.split(",", 1)[1], expected)
        for sig in headers["webhook-signature"].split(" ")
    )


def deliveries(conn: Connection[Any], endpoint_id: int) -> list[Any]:
    rows = repo.list_deliveries(conn, scope=None, endpoint_id=endpoint_id, limit=500)
    conn.commit()
    return rows


def test_delivered_in_order_and_verified_by_standardwebhooks(
    conn: Connection[Any], customer_id: int, receiver: Receiver, make_sender: Any
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    ids = emit_orders(conn, customer_id, 20)
    sender = make_sender()
    assert sender.drain() == 20
    got = receiver.wait_for(20)
    assert [r.webhook_id for r in got] == ids  # first attempts in event order
    for r in got:
        assert r.path == "/hooks/fleetcare?src=test"
        assert r.headers["content-type"] == "application/json"
        payload = Webhook(ep.secret).verify(r.body, r.headers)
        assert payload["type"] == "order.created" and payload["version"] == 1
        assert verify_by_hand(ep.secret, r.headers, r.body)
    rows = deliveries(conn, ep.id)
    assert {d.status for d in rows} == {"delivered"}
    log = service.delivery_log(conn, OPERATOR, rows[0].id)
    assert len(log.attempts) == 1
    a = log.attempts[0]
    assert a.status_code == 200 and a.outcome == "delivered" and a.latency_ms is not None
    assert a.response_excerpt == "ok"


def test_event_filter_and_other_customers(
    conn: Connection[Any], customer_id: int, receiver: Receiver, make_sender: Any
) -> None:
    only_shipments = add_endpoint(conn, customer_id, receiver.url, event_types=["shipment.*"])
    other = fleet.ensure_customer(conn, unique("other-co"), "Other")
    conn.commit()
    emit_orders(conn, customer_id, 2)
    emit_orders(conn, other.id, 2)
    events.emit(
        conn,
        "shipment.shipped",
        {
            "shipment_id": 1,
            "order_id": 1,
            "part_sku": "T-1",
            "quantity": 1,
            "depot": "D1",
            "shipped_at": "2026-11-26T10:00:00Z",
        },
        customer_id=customer_id,
    )
    conn.commit()
    assert make_sender().drain() == 1
    assert [json.loads(r.body)["type"] for r in receiver.requests] == ["shipment.shipped"]
    assert len(deliveries(conn, only_shipments.id)) == 1


def test_receiver_down_then_up_loses_nothing(
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    make_sender: Any,
    clock: ManualClock,
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    sender = make_sender()
    first = emit_orders(conn, customer_id, 3)
    assert sender.drain() == 3
    receiver.stop()
    during = emit_orders(conn, customer_id, 12, start=4)
    # Down: every first attempt is made once and fails (connection refused).
    assert sender.drain() == 12
    rows = deliveries(conn, ep.id)
    assert sum(d.status == "pending" for d in rows) == 12
    assert all(d.next_attempt_at is not None for d in rows if d.status == "pending")
    clock.advance(6)  # the 5 s retries come due; the receiver is still down
    # The endpoint is failing, so the sender takes one delivery per job: each retry once.
    assert sender.drain() == 12
    assert receiver.count() == 3
    receiver.start()
    for _ in range(12):  # walk the schedule forward until everything is through
        clock.advance(timedelta(minutes=40))
        sender.drain()
        if all(d.status == "delivered" for d in deliveries(conn, ep.id)):
            break
    got = Counter(r.webhook_id for r in receiver.requests)
    assert set(got) == set(first + during)
    assert all(d.status == "delivered" for d in deliveries(conn, ep.id))
    endpoint = service.get_endpoint(conn, OPERATOR, ep.id)
    assert endpoint.enabled and endpoint.failing_since is None


def test_slow_receiver_times_out_and_retries_follow_the_schedule(
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    make_sender: Any,
    clock: ManualClock,
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    (event_id,) = emit_orders(conn, customer_id, 1)
    sender = make_sender(timeout_s=0.3)
    receiver.reply = Reply(delay_s=1.0)
    assert sender.drain() == 1
    (d,) = deliveries(conn, ep.id)
    assert d.status == "pending" and d.attempt_count == 1
    assert d.last_error is not None and "Timeout" in d.last_error
    # From here the receiver answers fast but with 500: walk the whole schedule.
    receiver.reply = Reply(status=500, body=b"boom")
    nominal = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    for step, seconds in enumerate(nominal):
        (d,) = deliveries(conn, ep.id)
        assert d.last_attempt_at is not None and d.next_attempt_at is not None
        wait = (d.next_attempt_at - d.last_attempt_at).total_seconds()
        assert seconds * 0.9 <= wait <= seconds * 1.1, (step, wait)
        clock.set(d.next_attempt_at - timedelta(seconds=0.5))
        assert sender.drain() == 0  # not yet due
        clock.set(d.next_attempt_at)
        assert sender.drain() == 1
    (d,) = deliveries(conn, ep.id)
    assert d.status == "failed" and d.attempt_count == 10 and d.next_attempt_at is None
    log = service.delivery_log(conn, OPERATOR, d.id)
    assert [a.attempt_number for a in log.attempts] == list(range(1, 11))
    assert log.attempts[-1].status_code == 500 and log.attempts[-1].response_excerpt == "boom"
    assert {r.webhook_id for r in receiver.requests} == {event_id}


def test_a_receiver_answering_with_nul_bytes_is_logged_not_fatal(
    conn: Connection[Any], customer_id: int, receiver: Receiver, make_sender: Any
) -> None:
    """A receiver whose answer holds a NUL byte (binary, or UTF-16 text): the excerpt kept of
    it reached PostgreSQL's text column, which refuses NUL, so recording the attempt failed
    and the delivery was never logged as done. The excerpt keeps what text can hold."""
    ep = add_endpoint(conn, customer_id, receiver.url)
    emit_orders(conn, customer_id, 1)
    receiver.reply = Reply(status=200, body="ok".encode("utf-16-le") + b"\x00\xff")
    assert make_sender().drain() == 1
    (d,) = deliveries(conn, ep.id)
    assert d.status == "delivered"
    (attempt,) = service.delivery_log(conn, OPERATOR, d.id).attempts
    assert attempt.response_excerpt == "o\ufffdk\ufffd\ufffd\ufffd"
    # a status line with a NUL in it: the error quotes it, as text
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_once() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.recv(65536)
            peer.sendall(b"HTTP/1.1 2\x0000 OK\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer_once, daemon=True).start()
    bad = add_endpoint(conn, customer_id, f"http://127.0.0.1:{port}/hook")
    emit_orders(conn, customer_id, 1, start=2)
    try:
        assert make_sender().drain() >= 1
    finally:
        listener.close()
    (d,) = deliveries(conn, bad.id)
    assert d.status == "pending" and d.last_error is not None
    assert "BadStatusLine" in d.last_error and "\ufffd" in d.last_error, d.last_error


def test_410_disables_the_endpoint(
    conn: Connection[Any], customer_id: int, receiver: Receiver, make_sender: Any
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    watcher = Receiver().start()
    try:
        add_endpoint(conn, customer_id, watcher.url, event_types=["webhook.endpoint_disabled"])
        receiver.reply = Reply(status=410)
        emit_orders(conn, customer_id, 3)
        sender = make_sender()
        sender.drain()
        assert receiver.count() == 1  # nothing more is sent to a gone endpoint
        endpoint = service.get_endpoint(conn, OPERATOR, ep.id)
        assert not endpoint.enabled and "410" in (endpoint.disabled_reason or "")
        assert {d.status for d in deliveries(conn, ep.id)} == {"failed"}
        # The operator (and the customer's other endpoints) are told.
        (note,) = watcher.wait_for(1)
        body = json.loads(note.body)
        assert body["type"] == "webhook.endpoint_disabled"
        assert body["data"]["endpoint_id"] == ep.id
        emit_orders(conn, customer_id, 1, start=10)
        sender.drain()
        assert receiver.count() == 1
    finally:
        watcher.stop()


def test_429_retry_after_holds_the_endpoint(
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    make_sender: Any,
    clock: ManualClock,
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    receiver.reply = Reply(status=429, headers={"Retry-After": "120"})
    emit_orders(conn, customer_id, 2)
    sender = make_sender()
    assert sender.drain() == 1
    (first, _second) = deliveries(conn, ep.id)
    assert first.last_attempt_at is not None and first.next_attempt_at is not None
    assert (first.next_attempt_at - first.last_attempt_at).total_seconds() == 120
    receiver.reply = Reply()
    clock.advance(60)
    assert sender.drain() == 0  # the whole endpoint waits, even the untried second event
    clock.advance(61)
    assert sender.drain() == 2
    assert {d.status for d in deliveries(conn, ep.id)} == {"delivered"}


def test_failing_for_five_days_disables_and_tells_the_operator(
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    make_sender: Any,
    clock: ManualClock,
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    receiver.reply = Reply(status=500)
    sender = make_sender()
    emit_orders(conn, customer_id, 1)
    sender.drain()
    for _ in range(6):
        clock.advance(timedelta(days=1))
        emit_orders(conn, customer_id, 1, start=100 + _)
        sender.drain()
        if not service.get_endpoint(conn, OPERATOR, ep.id).enabled:
            break
    endpoint = service.get_endpoint(conn, OPERATOR, ep.id)
    conn.commit()
    assert not endpoint.enabled and "five days" in (endpoint.disabled_reason or "")
    assert endpoint.failing_since is not None and endpoint.disabled_at is not None
    assert endpoint.disabled_at - endpoint.failing_since >= timedelta(days=5)
    disabled_events = events.repo.list_events(
        conn, customer_id=customer_id, type="webhook.endpoint_disabled"
    )
    conn.commit()
    assert [e.payload["endpoint_id"] for e in disabled_events] == [ep.id]
    page, _ = service.list_endpoints(
        conn,
        OPERATOR,
        customer_id=customer_id,
        enabled=False,
        include_retired=False,
        after=None,
        limit=10,
    )
    assert [e.id for e in page] == [ep.id]


def test_two_senders_racing_send_each_attempt_once(
    db_url: str, conn: Connection[Any], customer_id: int, make_sender: Any
) -> None:
    receivers = [Receiver().start() for _ in range(3)]
    try:
        eps = [add_endpoint(conn, customer_id, r.url) for r in receivers]
        ids = emit_orders(conn, customer_id, 60)
        pool2 = open_pool(db_url, name="webhooks-test-2")
        senders = [make_sender(name="a"), make_sender(name="b"), make_sender(name="c")]
        senders.append(make_sender(name="d"))
        senders[-1].pool = pool2
        start = threading.Barrier(len(senders))

        def race(s: WebhookSender) -> None:
            start.wait()
            s.drain()

        threads = [threading.Thread(target=race, args=(s,)) for s in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        pool2.close()
        for r in receivers:
            got = [x.webhook_id for x in r.wait_for(60)]
            assert got == ids  # exactly once each, in event order
        assert sum(s.attempts_made for s in senders) == 180
        for ep in eps:
            rows = deliveries(conn, ep.id)
            assert all(d.status == "delivered" and d.attempt_count == 1 for d in rows)
    finally:
        for r in receivers:
            r.stop()


def test_a_sender_that_dies_mid_send_is_taken_over_after_its_lease(
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    make_sender: Any,
    pool: ConnectionPool[Connection[Any]],
    clock: ManualClock,
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    ids = emit_orders(conn, customer_id, 3)
    crashed = make_sender(name="crashed")
    assert crashed.lease <= timedelta(seconds=10)  # a dead sender frees it within seconds
    with pool.connection() as c:
        job = service.claim_job(
            c, now=clock.now(), owner="crashed", lease=crashed.lease, batch_size=100
        )
    assert job is not None
    crashed.send(job)  # sent, then the process died before recording anything
    assert receiver.count() == 3
    other = make_sender(name="survivor")
    assert other.drain() == 0  # the lease still holds
    clock.advance(crashed.lease + timedelta(seconds=1))
    assert other.drain() == 3
    got = [r.webhook_id for r in receiver.wait_for(6)]
    assert got == ids + ids  # at-least-once: same webhook-ids, receivers deduplicate
    assert all(d.status == "delivered" for d in deliveries(conn, ep.id))


def test_a_live_sender_renews_its_lease_however_long_its_sends_take(
    db_url: str,
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    make_sender: Any,
    clock: ManualClock,
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    emit_orders(conn, customer_id, 1)
    receiver.reply = Reply(delay_s=3.0)  # a slow receiver: the send outlasts the lease
    slow = make_sender(name="slow", lease=timedelta(seconds=2), renew_every_s=0.1, timeout_s=10)
    sending = threading.Thread(target=slow.run_once)
    sending.start()
    try:
        receiver.wait_for(1)  # the request is out; its answer takes 3 s
        clock.advance(timedelta(seconds=30))  # far past the lease it took
        deadline = time.monotonic() + 10
        renewed = False
        while not renewed and time.monotonic() < deadline:
            with connect(db_url) as c:
                row = c.execute(
                    "SELECT locked_until, locked_by FROM webhook_endpoints WHERE id = %s",
                    (ep.id,),
                ).fetchone()
            renewed = row is not None and row[1] == "slow" and row[0] > clock.now()
            if not renewed:
                time.sleep(0.05)
        assert renewed, "the live sender did not renew its lease"
        other = make_sender(name="other")
        assert other.drain() == 0  # the endpoint is still held by the live sender
    finally:
        sending.join(30)
    assert slow.keeper.renewals > 0 and receiver.count() == 1
    assert all(d.status == "delivered" for d in deliveries(conn, ep.id))


def test_replay_resends_with_the_same_webhook_id(
    conn: Connection[Any], customer_id: int, receiver: Receiver, make_sender: Any
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    (event_id,) = emit_orders(conn, customer_id, 1)
    sender = make_sender()
    sender.drain()
    result = service.replay_event(conn, OPERATOR, event_id, ReplayEvent(endpoint_id=ep.id))
    conn.commit()
    assert result.requeued == 1
    sender.drain()
    first, again = receiver.wait_for(2)
    assert first.webhook_id == again.webhook_id == event_id
    assert json.loads(first.body) == json.loads(again.body)
    (log,) = service.event_deliveries(conn, OPERATOR, event_id)
    assert log.status == "delivered" and len(log.attempts) == 2


def test_replay_failed_since_after_reenabling(
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    make_sender: Any,
    clock: ManualClock,
) -> None:
    from maintenance.webhooks.schemas import EndpointUpdate, ReplayFailed

    ep = add_endpoint(conn, customer_id, receiver.url)
    receiver.reply = Reply(status=410)
    ids = emit_orders(conn, customer_id, 4)
    sender = make_sender()
    sender.drain()
    assert receiver.count() == 1
    receiver.reply = Reply()
    service.update_endpoint(
        conn, OPERATOR, ep.id, EndpointUpdate(enabled=True), allow_private=True, now=clock.now()
    )
    result = service.replay_failed(
        conn, OPERATOR, ep.id, ReplayFailed(since=datetime.now(UTC) - timedelta(hours=1))
    )
    conn.commit()
    assert result.requeued == 4
    sender.drain()
    assert [r.webhook_id for r in receiver.requests[1:]] == ids


def test_rotation_sends_both_signatures_during_the_overlap(
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    make_sender: Any,
    clock: ManualClock,
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    rotated = service.rotate_secret(
        conn, OPERATOR, ep.id, SecretRotation(overlap_hours=1), now=clock.now()
    )
    conn.commit()
    sender = make_sender()
    emit_orders(conn, customer_id, 1)
    sender.drain()
    (during,) = receiver.wait_for(1)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(ep.secret).verify(during.body, during.headers)
    assert Webhook(rotated.secret).verify(during.body, during.headers)
    clock.advance(timedelta(hours=1, seconds=1))
    emit_orders(conn, customer_id, 1, start=2)
    sender.drain()
    after = receiver.wait_for(2)[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verify_by_hand(rotated.secret, after.headers, after.body)
    assert not verify_by_hand(ep.secret, after.headers, after.body)


def test_addresses_are_checked_again_at_send_time(
    conn: Connection[Any], customer_id: int, receiver: Receiver, make_sender: Any
) -> None:
    # 1. Accepted while private addresses were allowed; this sender does not allow them.
    ep = add_endpoint(conn, customer_id, receiver.url)
    emit_orders(conn, customer_id, 1)
    strict = make_sender(allow_private=False)
    assert strict.drain() == 1
    assert receiver.count() == 0
    (d,) = deliveries(conn, ep.id)
    assert d.status == "pending" and "loopback" in (d.last_error or "")
    log = service.delivery_log(conn, OPERATOR, d.id)
    assert log.attempts[0].outcome == "refused" and log.attempts[0].status_code is None

    # 2. DNS rebinding: a public name, accepted, later re-pointed at a private address.
    answers = {"hooks.example": ["93.184.216.34"]}

    def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    other = fleet.ensure_customer(conn, unique("rebind-co"), "Rebind").id
    rebound = service.create_endpoint(
        conn,
        OPERATOR,
        EndpointCreate(customer_id=other, url=f"http://hooks.example:{receiver.port}/"),
        allow_private=False,
        resolver=resolver,
    )
    conn.commit()
    answers["hooks.example"] = ["127.0.0.1"]  # the name now points at us
    emit_orders(conn, other, 1)
    assert make_sender(allow_private=False, resolver=resolver).drain() == 1
    assert receiver.count() == 0
    (d,) = deliveries(conn, rebound.id)
    assert "loopback" in (d.last_error or "")


def test_worker_wakes_on_listen_and_delivers(
    db_url: str, customer_id: int, conn: Connection[Any], receiver: Receiver, settings: Settings
) -> None:
    ep = add_endpoint(conn, customer_id, receiver.url)
    stop = threading.Event()
    ready = threading.Event()
    # A long poll: only NOTIFY can make this fast.
    worker = threading.Thread(
        target=run_webhook_senders,
        args=(db_url, settings),
        kwargs={"stop": stop, "concurrency": 2, "poll_s": 30.0, "on_ready": ready.set},
    )
    worker.start()
    try:
        assert ready.wait(10)
        ids = emit_orders(conn, customer_id, 5)
        got = receiver.wait_for(5, timeout=10)
        assert [r.webhook_id for r in got] == ids
        # The receiver answers before the sender records; wait for the record.
        deadline = time.monotonic() + 10
        with connect(db_url) as c:
            while {d.status for d in deliveries(c, ep.id)} != {"delivered"}:
                assert time.monotonic() < deadline, "deliveries were not recorded"
                stop.wait(0.05)
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()


def test_an_open_business_transaction_does_not_block_the_sender(
    db_url: str, conn: Connection[Any], customer_id: int, receiver: Receiver, make_sender: Any
) -> None:
    # The trigger's delivery insert holds a key-share lock on the endpoint row until the
    # business transaction ends; the sender's claim must not skip the endpoint for it.
    add_endpoint(conn, customer_id, receiver.url)
    (committed,) = emit_orders(conn, customer_id, 1)
    with connect(db_url) as busy:
        events.emit(busy, "order.created", {"order_id": 99}, customer_id=customer_id)
        assert make_sender().drain() == 1
        assert [r.webhook_id for r in receiver.requests] == [committed]
        busy.rollback()


def test_https_connects_to_the_checked_address_and_verifies_the_name(
    tmp_path: Path, conn: Connection[Any], customer_id: int, make_sender: Any
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=hooks.test",
            "-addext",
            "subjectAltName=DNS:hooks.test",
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    tls = Receiver().start(ssl_context=server_ctx)
    try:
        names = {"hooks.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]}

        def resolver(host: str, port: int) -> list[str]:
            return names[host]

        def endpoint(host: str, customer: int) -> NewEndpoint:
            ep = service.create_endpoint(
                conn,
                OPERATOR,
                EndpointCreate(customer_id=customer, url=f"https://{host}:{tls.port}/in"),
                allow_private=True,
                resolver=resolver,
            )
            conn.commit()
            return ep

        good = endpoint("hooks.test", customer_id)
        impostor_customer = fleet.ensure_customer(conn, unique("impostor-co"), "Impostor").id
        bad = endpoint("impostor.test", impostor_customer)
        emit_orders(conn, customer_id, 1)
        emit_orders(conn, impostor_customer, 1)
        transport = WebhookTransport(
            timeout_s=2, verify=ssl.create_default_context(cafile=str(cert))
        )
        assert make_sender(resolver=resolver, transport=transport).drain() == 2
        (got,) = tls.wait_for(1)
        assert got.headers["host"] == f"hooks.test:{tls.port}"  # pinned IP, original name
        assert Webhook(good.secret).verify(got.body, got.headers)
        (d,) = deliveries(conn, bad.id)
        assert d.status == "pending" and "CERTIFICATE_VERIFY_FAILED" in (d.last_error or "")
        assert tls.count() == 1
    finally:
        tls.stop()


def test_no_secret_reaches_the_logs(
    conn: Connection[Any],
    customer_id: int,
    receiver: Receiver,
    make_sender: Any,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ep = add_endpoint(conn, customer_id, receiver.url)
    rotated = service.rotate_secret(conn, OPERATOR, ep.id, SecretRotation(), now=clock.now())
    conn.commit()
    receiver.reply = Reply(status=410)
    emit_orders(conn, customer_id, 2)
    make_sender().drain()
    text = caplog.text
    assert "disabled" in text  # the operator's warning is there...
    for secret in (ep.secret, rotated.secret, ep.secret.removeprefix("whsec_")):
        assert secret not in text  # ...but no secret
    assert "webhook-signature" not in text
    record = repo.get_endpoint(conn, ep.id, scope=None)
    assert record is not None and ep.secret not in repr(record) and ep.secret not in str(record)


def test_fleetcare_webhooks_command_delivers_and_stops_on_sigterm(
    db_url: str, conn: Connection[Any], customer_id: int, receiver: Receiver
) -> None:
    add_endpoint(conn, customer_id, receiver.url)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "FLEETCARE_DATABASE_URL": db_url,
        "FLEETCARE_WEBHOOKS_ALLOW_PRIVATE": "true",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "webhooks", "--concurrency", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        ids = emit_orders(conn, customer_id, 3)
        # the command imports the whole CLI first: 20 s and more on a loaded machine
        assert [r.webhook_id for r in receiver.wait_for(3, timeout=180)] == ids
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 128 + signal.SIGTERM), err.decode()
    assert b"Traceback" not in err, err.decode()


def test_fleetcare_webhooks_command_rejects_bad_options() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "webhooks", "--concurrency", "0"],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=60,
    )
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
