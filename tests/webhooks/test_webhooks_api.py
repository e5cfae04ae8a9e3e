"""The webhooks API: endpoints CRUD with scoping, secrets shown once, log, replay, ping."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from fleetcare.clock import ManualClock
from fleetcare.db import connect, open_pool
from fleetcare.settings import Settings
from maintenance.events import service as events
from maintenance.webhooks.worker import WebhookSender
from tests.conftest import Tenant
from tests.fixtures.webhook_receiver import Receiver, Reply


@pytest.fixture
def drain(db_url: str) -> Iterator[Callable[[], int]]:
    pool = open_pool(db_url, name="webhooks-api-test")
    sender = WebhookSender(
        pool,
        allow_private=True,
        clock=ManualClock(datetime.now(UTC)),
        timeout_s=0.5,
        rng=random.Random(3),
    )
    yield sender.drain
    sender.close()
    pool.close()


def emit_order(db_url: str, customer_id: int, order_id: int = 1) -> str:
    with connect(db_url) as c:
        ev = events.emit(
            c,
            "order.created",
            {
                "order_id": order_id,
                "asset_id": 1,
                "asset_ref": "A-1",
                "component": "brake",
                "status": "open",
            },
            customer_id=customer_id,
        )
        c.commit()
    return ev.public_id


def create(client: TestClient, tenant: Tenant, url: str, **body: Any) -> dict[str, Any]:
    resp = client.post("/v1/webhooks/endpoints", json={"url": url, **body}, headers=tenant.headers)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def test_crud_shows_the_secret_only_once(
    client: TestClient, make_tenant: Callable[..., Tenant], receiver: Receiver
) -> None:
    acme = make_tenant()
    ep = create(
        client,
        acme,
        receiver.url,
        description="maintenance team",
        event_types=["order.*", "prediction.alert"],
    )
    assert ep["secret"].startswith("whsec_") and ep["customer_id"] == acme.customer.id
    assert ep["event_types"] == ["order.*", "prediction.alert"]
    got = client.get(f"/v1/webhooks/endpoints/{ep['id']}", headers=acme.headers).json()
    assert "secret" not in got and "previous_secret" not in got
    listed = client.get("/v1/webhooks/endpoints", headers=acme.headers).json()
    assert [e["id"] for e in listed["items"]] == [ep["id"]]
    assert "whsec_" not in str(listed)
    patched = client.patch(
        f"/v1/webhooks/endpoints/{ep['id']}",
        json={"description": "night shift", "event_types": []},
        headers=acme.headers,
    ).json()
    assert patched["description"] == "night shift" and patched["event_types"] == []
    rotated = client.post(
        f"/v1/webhooks/endpoints/{ep['id']}/rotate-secret",
        json={"overlap_hours": 2},
        headers=acme.headers,
    ).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != ep["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    assert "whsec_" not in str(rotated["endpoint"])
    deleted = client.delete(f"/v1/webhooks/endpoints/{ep['id']}", headers=acme.headers).json()
    assert deleted["retired_at"] is not None and not deleted["enabled"]
    assert client.get("/v1/webhooks/endpoints", headers=acme.headers).json()["items"] == []


def test_bad_input_answers_422_and_technicians_403(
    client: TestClient, make_tenant: Callable[..., Tenant], receiver: Receiver
) -> None:
    acme = make_tenant()
    for body in (
        {"url": receiver.url, "event_types": ["order.exploded"]},
        {"url": "ftp://example.com/x"},
        {"url": "http://user:pw@example.com/x"},
        {"url": receiver.url, "colour": "red"},
        {"url": "not a url at all"},
    ):
        resp = client.post("/v1/webhooks/endpoints", json=body, headers=acme.headers)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["error"] in ("invalid", "invalid_request")
    tech = make_tenant(role="technician")
    resp = client.post("/v1/webhooks/endpoints", json={"url": receiver.url}, headers=tech.headers)
    assert resp.status_code == 403


def test_the_api_that_up_serves_accepts_a_loopback_webhook(
    tmp_path: Path, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    """``fleetcare up``'s demo receiver listens on loopback: its API allows that (#24)."""
    from api.app import create_app
    from fleetcare.settings import quick_start_settings

    settings = quick_start_settings(Settings(database_url=db_url, data_dir=tmp_path, demo=False))
    acme = make_tenant()
    with TestClient(create_app(settings, db_url)) as client:
        assert create(client, acme, "http://127.0.0.1:8080/hook")["url"].startswith("http://127")


def test_private_addresses_refused_at_creation(
    tmp_path: Path, db_url: str, make_tenant: Callable[..., Tenant]
) -> None:
    from api.app import create_app

    strict = Settings(database_url=db_url, data_dir=tmp_path, demo=False)
    assert strict.webhooks_allow_private is False
    acme = make_tenant()
    with TestClient(create_app(strict, db_url)) as client:
        for url in (
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://10.0.0.5/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data/",
            # every IPv6 form that carries an internal IPv4 address, multicast, port 0
            "http://[::127.0.0.1]/",  # IPv4-compatible
            "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
            "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
            "http://[64:ff9b::7f00:1]/",  # NAT64 well-known prefix, 127.0.0.1
            "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the cloud metadata address
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo, client 192.0.2.45
            "http://224.0.0.1/",
            "http://[ff02::1]/",
            "http://93.184.215.14:0/",
        ):
            resp = client.post("/v1/webhooks/endpoints", json={"url": url}, headers=acme.headers)
            assert resp.status_code == 422, url
            assert "refused" in resp.json()["detail"]


def test_another_customers_objects_answer_404(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    receiver: Receiver,
    db_url: str,
    drain: Callable[[], int],
) -> None:
    acme, rival = make_tenant(), make_tenant()
    ep = create(client, acme, receiver.url)
    event_id = emit_order(db_url, acme.customer.id)
    drain()
    delivery_id = client.get(
        f"/v1/webhooks/endpoints/{ep['id']}/deliveries", headers=acme.headers
    ).json()["items"][0]["id"]
    since = {"since": "2020-01-01T00:00:00Z"}
    probes = [
        ("get", f"/v1/webhooks/endpoints/{ep['id']}", None),
        ("patch", f"/v1/webhooks/endpoints/{ep['id']}", {"description": "x"}),
        ("delete", f"/v1/webhooks/endpoints/{ep['id']}", None),
        ("post", f"/v1/webhooks/endpoints/{ep['id']}/rotate-secret", {}),
        ("post", f"/v1/webhooks/endpoints/{ep['id']}/test", None),
        ("get", f"/v1/webhooks/endpoints/{ep['id']}/deliveries", None),
        ("post", f"/v1/webhooks/endpoints/{ep['id']}/replay", since),
        ("get", f"/v1/webhooks/deliveries/{delivery_id}", None),
        ("get", f"/v1/webhooks/events/{event_id}/deliveries", None),
        ("post", f"/v1/webhooks/events/{event_id}/replay", {}),
    ]
    for method, path, body in probes:
        kwargs: dict[str, Any] = {"headers": rival.headers}
        if body is not None:
            kwargs["json"] = body
        resp = client.request(method.upper(), path, **kwargs)
        assert resp.status_code == 404, (method, path, resp.text)
    # Naming the rival's endpoint in a replay of one's own event is a 404 too.
    rival_ep = create(client, rival, receiver.url)
    resp = client.post(
        f"/v1/webhooks/events/{event_id}/replay",
        json={"endpoint_id": rival_ep["id"]},
        headers=acme.headers,
    )
    assert resp.status_code == 404
    # And the owner still sees everything.
    assert client.get(f"/v1/webhooks/endpoints/{ep['id']}", headers=acme.headers).status_code == 200


def test_log_replay_and_ping_through_the_api(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    receiver: Receiver,
    db_url: str,
    drain: Callable[[], int],
    operator_headers: dict[str, str],
) -> None:
    acme = make_tenant()
    ep = create(client, acme, receiver.url)
    receiver.reply = Reply(status=500, body=b"database is down")
    event_id = emit_order(db_url, acme.customer.id)
    drain()
    (log,) = client.get(f"/v1/webhooks/events/{event_id}/deliveries", headers=acme.headers).json()
    assert log["status"] == "pending" and log["attempt_count"] == 1
    (attempt,) = log["attempts"]
    assert attempt["status_code"] == 500 and attempt["error"] == "HTTP 500"
    assert attempt["latency_ms"] > 0 and attempt["response_excerpt"] == "database is down"
    # Replay one event: sent again at once, same webhook-id.
    receiver.reply = Reply()
    resp = client.post(f"/v1/webhooks/events/{event_id}/replay", json={}, headers=acme.headers)
    assert resp.status_code == 202 and resp.json()["requeued"] == 1
    drain()
    assert [r.webhook_id for r in receiver.requests] == [event_id, event_id]
    one = client.get(f"/v1/webhooks/deliveries/{log['id']}", headers=acme.headers).json()
    assert one["status"] == "delivered" and [a["status_code"] for a in one["attempts"]] == [
        500,
        200,
    ]
    # A test ping reaches this endpoint only, signed like everything else.
    other = Receiver().start()
    try:
        create(client, acme, other.url)
        ping = client.post(f"/v1/webhooks/endpoints/{ep['id']}/test", headers=acme.headers)
        assert ping.status_code == 202
        drain()
        last = receiver.requests[-1]
        assert last.webhook_id == ping.json()["event_public_id"]
        assert Webhook(ep["secret"]).verify(last.body, last.headers)["type"] == "webhook.ping"
        assert other.count() == 0
        # Replaying the ping sends it again to the same endpoint only.
        resp = client.post(
            f"/v1/webhooks/events/{last.webhook_id}/replay", json={}, headers=acme.headers
        )
        assert resp.json()["requeued"] == 1
        drain()
        assert receiver.requests[-1].webhook_id == last.webhook_id
        assert other.count() == 0
    finally:
        other.stop()
    # The operator sees the customer's endpoints and can filter the disabled ones.
    mine = {"customer_id": acme.customer.id}
    all_eps = client.get("/v1/webhooks/endpoints", params=mine, headers=operator_headers).json()[
        "items"
    ]
    assert ep["id"] in [e["id"] for e in all_eps]
    disabled = client.get(
        "/v1/webhooks/endpoints", params={**mine, "enabled": "false"}, headers=operator_headers
    ).json()["items"]
    assert disabled == []


def test_replay_failed_since_requires_an_enabled_endpoint(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    receiver: Receiver,
    db_url: str,
    drain: Callable[[], int],
) -> None:
    acme = make_tenant()
    ep = create(client, acme, receiver.url)
    receiver.reply = Reply(status=410)
    ids = [emit_order(db_url, acme.customer.id, i) for i in range(3)]
    drain()
    got = client.get(f"/v1/webhooks/endpoints/{ep['id']}", headers=acme.headers).json()
    assert not got["enabled"] and "410" in got["disabled_reason"]
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    resp = client.post(
        f"/v1/webhooks/endpoints/{ep['id']}/replay", json={"since": since}, headers=acme.headers
    )
    assert resp.status_code == 409
    client.patch(f"/v1/webhooks/endpoints/{ep['id']}", json={"enabled": True}, headers=acme.headers)
    receiver.reply = Reply()
    resp = client.post(
        f"/v1/webhooks/endpoints/{ep['id']}/replay", json={"since": since}, headers=acme.headers
    )
    assert resp.status_code == 202 and resp.json()["requeued"] == 3
    drain()
    assert [r.webhook_id for r in receiver.requests[1:]] == ids
    failed = client.get(
        f"/v1/webhooks/endpoints/{ep['id']}/deliveries",
        params={"status": "failed"},
        headers=acme.headers,
    ).json()
    assert failed["items"] == []


@pytest.mark.parametrize(
    ("address", "reached"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("::10.0.0.1", "10.0.0.1"),
        ("2002:a00:1::", "10.0.0.1"),
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),
    ],
)
def test_each_embedded_ipv4_form_is_judged_by_the_address_it_reaches(
    address: str, reached: str
) -> None:
    import ipaddress

    from maintenance.webhooks.addresses import address_problem, embedded_ipv4

    ip = ipaddress.ip_address(address)
    assert ipaddress.ip_address(reached) in embedded_ipv4(ip)
    assert address_problem(ip, allow_private=False) is not None
    public = ipaddress.ip_address("64:ff9b::808:808")  # NAT64 of 8.8.8.8: a public target
    assert address_problem(public, allow_private=False) is None
