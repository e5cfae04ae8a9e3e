"""Several copies of each worker at once on one database and one broker, through the workers'
public entry points: the copies share the work, and nothing is lost or done twice."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import Connection

from fleet import service as fleet
from fleetcare.clock import ManualClock
from fleetcare.db import connect
from fleetcare.settings import Settings
from ingest.schemas import IngestLimits
from ingest.worker import IngestConfig, IngestWorker
from maintenance.events import service as events
from maintenance.policy.worker import DispatchStats, run_dispatcher
from maintenance.webhooks.worker import run_webhook_senders
from models.worker import ScoringWorker
from tests.fixtures.maintenance import T0, insert_prediction, make_world, stock_depot
from tests.fixtures.maintenance import clock as policy_clock
from tests.fixtures.wear import install_model, make_fleet, trained_tire_model
from tests.fixtures.webhook_receiver import Receiver
from tests.ingest_helpers import Publisher, epoch_ms, reading
from tests.ingest_helpers import make_fleet as make_ingest_fleet

TIMEOUT = 60.0
COPIES = 3


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def scalar(db_url: str, query: str, *params: Any) -> Any:
    with connect(db_url) as c:
        row = c.execute(query, params).fetchone()
    return row[0] if row else None


def test_ingestors_on_a_shared_subscription_split_the_stream_and_store_each_reading_once(
    db_url: str, mqtt_url: str, topic_root: str
) -> None:
    with connect(db_url) as c:
        small = make_ingest_fleet(c, tires=4)
    workers = [
        IngestWorker(
            IngestConfig(
                mqtt_url=mqtt_url,
                database_url=db_url,
                client_id=f"ingest-{i}-{uuid.uuid4().hex[:6]}",
                limits=IngestLimits(topic_root=topic_root, max_readings_per_message=100),
                shared_subscription=True,  # several ingestors: the broker splits the stream
                batch_max_wait_s=0.05,
            )
        )
        for i in range(COPIES)
    ]
    start = datetime.now(UTC) - timedelta(minutes=10)
    messages, per_message = 900, 10
    payloads = []
    for m in range(messages):
        rows = [
            reading(
                small.tires[(m * per_message + i) % 4],
                epoch_ms(start) + m * per_message + i,
                pressure_kpa=800 + i,
            )
            for i in range(per_message)
        ]
        payloads.append(json.dumps({"readings": rows}).encode())
    pub = Publisher(mqtt_url)
    try:
        for w in workers:
            w.start()
        for w in workers:
            assert w.subscribed.wait(TIMEOUT), "ingestor did not subscribe"
            assert w.shared
        pub.publish_many(f"{topic_root}/{small.device_a}/telemetry", payloads)
        pub.wait_all_acked()
        assert wait_until(lambda: sum(w.stats.messages_total for w in workers) >= messages)
    finally:
        pub.close()
        for w in workers:
            w.stop()
    per_worker = [w.stats.messages_total for w in workers]
    assert sum(per_worker) == messages  # each message went to exactly one ingestor
    assert all(n > 0 for n in per_worker), f"the work was not shared: {per_worker}"
    assert sum(w.stats.stored_total for w in workers) == messages * per_message
    assert sum(w.stats.duplicates_total for w in workers) == 0
    assert scalar(db_url, "SELECT count(*) FROM telemetry") == messages * per_message


def test_scoring_workers_on_shards_score_every_changed_asset_once(
    db_url: str, conn: Connection[Any]
) -> None:
    customer = fleet.ensure_customer(conn, "scale", "Scale")
    tires = make_fleet(conn, customer.id, n_assets=12)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    install_model(conn, trained_tire_model(), clock)
    conn.commit()
    workers = [ScoringWorker(db_url, clock, poll_s=0.05, shard=(k, 2)) for k in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: sum(w.predictions_total for w in workers) >= 12)
        # a few more passes each: nothing changed, so nothing is scored again
        passes = [w.passes for w in workers]
        assert wait_until(
            lambda: all(w.passes >= p + 2 for w, p in zip(workers, passes, strict=True))
        )
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert [w.predictions_total for w in workers] == [6, 6]
    counts = dict(conn.execute("SELECT asset_id, count(*) FROM predictions GROUP BY 1").fetchall())
    assert counts == {a: 1 for a in tires.asset_ids}


def test_dispatchers_share_the_queue_and_raise_each_order_once(
    db_url: str, conn: Connection[Any]
) -> None:
    worlds = [make_world(conn, f"scale-{i}", ref=f"SC-{i}") for i in range(12)]
    stock_depot(conn, "D", on_hand=100)
    stop = threading.Event()
    stats = [DispatchStats() for _ in range(COPIES)]
    # each copy, after its first batch, waits (bounded) until every copy has handled one: the
    # queue then provably went to all of them, whatever the machine's scheduling
    first_batches = threading.Barrier(COPIES)

    def on_batch(stat: DispatchStats) -> Callable[[int], None]:
        def seen(_handled: int) -> None:
            if stat.batches == 1:
                first_batches.wait(TIMEOUT)

        return seen

    threads = [
        threading.Thread(
            target=run_dispatcher,
            args=(db_url,),
            kwargs={
                "stop": stop,
                "clock": policy_clock(),
                "poll_interval": 0.2,
                "batch_size": 4,
                "stats": s,
                "on_batch": on_batch(s),
            },
        )
        for s in stats
    ]
    for t in threads:
        t.start()
    try:
        for s in stats:
            assert s.idle.wait(TIMEOUT), "dispatcher did not start"
        for step in range(4):
            for w in worlds:
                insert_prediction(
                    conn, w.asset_id, time=T0 + timedelta(minutes=step), due_in_days=5, commit=False
                )
        conn.commit()
        assert wait_until(lambda: sum(s.handled for s in stats) >= 48)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert sum(s.handled for s in stats) == 48
    assert all(s.handled > 0 for s in stats), [s.handled for s in stats]
    assert sum(s.errors for s in stats) == 0
    orders = conn.execute(
        "SELECT asset_id, count(*) FROM maintenance_orders GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert orders == sorted((w.asset_id, 1) for w in worlds)
    created = conn.execute("SELECT count(*) FROM events WHERE type = 'order.created'").fetchone()
    assert created == (12,)


def test_webhook_sender_copies_share_the_endpoints_and_deliver_each_event_once(
    db_url: str, conn: Connection[Any], settings: Settings
) -> None:
    from maintenance.webhooks import service as hooks
    from maintenance.webhooks.schemas import EndpointCreate
    from tests.conftest import OPERATOR

    customer = fleet.ensure_customer(conn, "hooks-scale", "Hooks Scale")
    receivers = [Receiver().start() for _ in range(6)]
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        for r in receivers:
            hooks.create_endpoint(
                conn, OPERATOR, EndpointCreate(customer_id=customer.id, url=r.url),
                allow_private=True,
            )  # fmt: skip
        conn.commit()
        ready = [threading.Event() for _ in range(COPIES)]
        threads = [
            threading.Thread(
                target=run_webhook_senders,
                args=(db_url, settings),
                kwargs={"stop": stop, "concurrency": 1, "poll_s": 0.2, "on_ready": e.set},
            )
            for e in ready
        ]
        for t in threads:
            t.start()
        assert all(e.wait(TIMEOUT) for e in ready)
        ids = []
        for i in range(40):
            ev = events.emit(
                conn, "order.created",
                {"order_id": i, "asset_id": 1, "asset_ref": "X", "component": "c",
                 "status": "open"},
                customer_id=customer.id, subject=f"order:{i}",
            )  # fmt: skip
            conn.commit()
            ids.append(ev.public_id)
        for r in receivers:
            got = [x.webhook_id for x in r.wait_for(40, timeout=TIMEOUT)]
            assert got == ids  # each event exactly once at each endpoint, in order
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        for r in receivers:
            r.stop()
    attempts = conn.execute(
        "SELECT sender, count(*), count(DISTINCT delivery_id) FROM webhook_attempts GROUP BY 1"
    ).fetchall()
    assert sum(n for _, n, _ in attempts) == 6 * 40
    assert sum(d for _, _, d in attempts) == 6 * 40  # no delivery attempted twice
    assert len(attempts) >= 2, f"one sender did all the work: {attempts}"
