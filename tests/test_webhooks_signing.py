"""Signing, the retry schedule, address checks and the event catalogue: no database, no HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from maintenance.webhooks import service
from maintenance.webhooks.addresses import (
    UnsafeAddress,
    parse_endpoint_url,
    resolve_checked,
)
from maintenance.webhooks.catalog import EVENT_TYPES, check_event_filter, validate_payload
from maintenance.webhooks.schemas import DueDelivery
from maintenance.webhooks.transport import classify, parse_retry_after, sign, webhook_body

# The Standard Webhooks specification's test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_PAYLOAD = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def independent_signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """HMAC-SHA256 of ``id.timestamp.body`` with the base64-decoded secret, by hand."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def test_our_signer_reproduces_the_spec_test_vector() -> None:
    when = datetime.fromtimestamp(SPEC_TS, UTC)
    assert sign([Webhook(SPEC_SECRET)], SPEC_ID, when, SPEC_PAYLOAD) == SPEC_SIGNATURE
    assert independent_signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_PAYLOAD) == SPEC_SIGNATURE


def test_rotation_sends_both_signatures_and_either_verifies() -> None:
    old, new = service.new_secret(), service.new_secret()
    now = datetime.now(UTC)
    header = sign([Webhook(new), Webhook(old)], "evt_1", now, '{"a":1}')
    parts = header.split(" ")
    assert len(parts) == 2 and all(p.startswith("v1,") for p in parts)
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": header,
    }
    # A receiver that knows only one of the secrets accepts the message.
    assert Webhook(old).verify('{"a":1}', headers) == {"a": 1}
    assert Webhook(new).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(service.new_secret()).verify('{"a":1}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify('{"a":2}', headers)


def test_new_secrets_are_whsec_base64_of_32_bytes() -> None:
    secret = service.new_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != service.new_secret()


def order_created(public_id: str, payload: dict[str, object]) -> DueDelivery:
    """A first attempt at delivering an ``order.created`` event with ``payload``."""
    return DueDelivery(
        delivery_id=1,
        generation=0,
        attempt_count=0,
        schedule_step=0,
        event_id=1,
        event_public_id=public_id,
        event_type="order.created",
        event_version=1,
        subject="order:42",
        payload=payload,
        occurred_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
    )


def test_body_is_the_standard_envelope() -> None:
    delivery = order_created("evt_x", {"order_id": 42})
    assert webhook_body(delivery) == (
        '{"type":"order.created","version":1,"timestamp":"2026-11-26T10:00:00Z",'
        '"subject":"order:42","data":{"order_id":42}}'
    )


def test_a_body_with_non_ascii_text_is_signed_over_the_utf8_bytes_sent() -> None:
    """The envelope keeps non-ASCII text as it is (``ensure_ascii=False``): the signature must
    be over the UTF-8 bytes a receiver reads off the wire, as the specification says, checked
    by the ``standardwebhooks`` verifier on those bytes and by hand."""
    delivery = order_created(
        "evt_1", {"asset": "Pneu-avant-gauche é 🚚", "note": "line\u2028separator"}
    )
    body = webhook_body(delivery)
    wire = body.encode()  # what the sender posts (maintenance.webhooks.transport)
    assert "é 🚚".encode() in wire  # not escaped to \u00e9
    secret, when = service.new_secret(), datetime.now(UTC)
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": sign([Webhook(secret)], "evt_1", when, body),
    }
    assert Webhook(secret).verify(wire, headers)["data"]["asset"] == "Pneu-avant-gauche é 🚚"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"evt_1.{headers['webhook-timestamp']}.".encode() + wire
    by_hand = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{by_hand}"


def test_retry_schedule_spans_about_three_days_with_bounded_jitter() -> None:
    rng = random.Random(1)
    nominal = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    for step, seconds in enumerate(nominal):
        delay = service.retry_delay(step, rng)
        assert delay is not None
        assert seconds * 0.9 <= delay.total_seconds() <= seconds * 1.1
    assert service.retry_delay(len(nominal), rng) is None
    total = sum(service.RETRY_SCHEDULE, timedelta())
    assert timedelta(days=3) < total < timedelta(days=3.5)


def test_only_2xx_is_success() -> None:
    assert [classify(c) for c in (200, 204, 299)] == ["delivered"] * 3
    assert classify(301) == "failed" and classify(400) == "failed" and classify(500) == "failed"
    assert classify(410) == "gone"
    assert classify(429) == "throttled" and classify(503) == "throttled"


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Thu, 26 Nov 2026 10:02:00 GMT", now) == 120
    assert parse_retry_after("999999999", now) == 24 * 3600
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def _resolver(answers: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.5/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://100.100.100.200/",
        "http://metadata.google.internal/",
        "https://rebind.example/",  # resolves to a public and a private address
    ],
)
def test_private_and_metadata_addresses_are_refused(url: str) -> None:
    resolver = _resolver(
        {"localhost": ["127.0.0.1", "::1"], "rebind.example": ["93.184.216.34", "10.0.0.7"]}
    )
    with pytest.raises(UnsafeAddress):
        resolve_checked(parse_endpoint_url(url), allow_private=False, resolver=resolver)


def test_public_addresses_pass_and_metadata_stays_refused_when_private_allowed() -> None:
    resolver = _resolver({"hooks.example": ["93.184.216.34"]})
    url = parse_endpoint_url("https://hooks.example/in?x=1")
    assert resolve_checked(url, allow_private=False, resolver=resolver) == ["93.184.216.34"]
    assert url.pinned("93.184.216.34") == "https://93.184.216.34:443/in?x=1"
    assert url.host_header == "hooks.example"
    loop = parse_endpoint_url("http://127.0.0.1:9000/")
    assert resolve_checked(loop, allow_private=True, resolver=resolver) == ["127.0.0.1"]
    with pytest.raises(UnsafeAddress):
        resolve_checked(
            parse_endpoint_url("http://169.254.169.254/"), allow_private=True, resolver=resolver
        )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.example/",
        "HTTP://x.example/",
        "http://user:pw@x.example/",
        "http:///nohost",
        "http://x:99999/",
        "http://x.example/a b",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeAddress):
        parse_endpoint_url(url)


def test_event_filter_accepts_known_types_and_families_only() -> None:
    assert check_event_filter(["order.*", "prediction.alert", "order.*"]) == [
        "order.*",
        "prediction.alert",
    ]
    with pytest.raises(ValueError, match=r"order\.exploded"):
        check_event_filter(["order.exploded"])
    with pytest.raises(ValueError):
        check_event_filter(["nope.*"])


def test_catalogue_covers_the_issue_and_every_type_is_documented() -> None:
    required = {
        "prediction.alert",
        "order.created",
        "order.scheduled",
        "order.completed",
        "order.cancelled",
        "shipment.created",
        "shipment.shipped",
        "shipment.delivered",
        "invoice.issued",
        "device.offline",
        "ingest.quarantine_spike",
        "webhook.ping",
    }
    assert required <= set(EVENT_TYPES)
    assert any(name.startswith("subscription.") for name in EVENT_TYPES)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "events.md").read_text()
    for name, event_type in EVENT_TYPES.items():
        assert f"### `{name}` v{event_type.version}" in docs, name
        for field_name in event_type.payload.model_fields:
            assert f"`{field_name}`" in docs, (name, field_name)


def test_payload_models_validate_and_keep_extra_fields() -> None:
    order = {
        "id": 1,
        "customer_id": 2,
        "asset_id": 3,
        "component": "tread",
        "status": "raised",
        "due_at": "2026-12-01T00:00:00Z",
        "priority": "normal",  # not in the stable contract, kept anyway
    }
    model = validate_payload("order.created", {"order": order, "asset_ref": "TRK-1", "sku": None})
    assert model.model_dump()["order"]["priority"] == "normal"
    with pytest.raises(ValueError):
        validate_payload("order.created", {"order_id": 1})


def test_the_benchmark_sends_a_documented_order_created_payload() -> None:
    from bench.webhooks import order_created_payload

    validate_payload("order.created", order_created_payload(7))
