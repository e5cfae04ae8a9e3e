"""Ingest health, a device's quarantine, and Prometheus metrics of ingest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from api.deps import Caller, Limit, ReadConn
from fleetcare.inputs import INT8_MAX, Id, Moment
from ingest import service as ingest
from ingest.schemas import IngestHealth, QuarantinePage

router = APIRouter(tags=["ingest"])


def _now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", None)
    return clock.now() if clock is not None else datetime.now(UTC)


@router.get("/v1/ingest/health")
def ingest_health(
    request: Request,
    conn: ReadConn,
    caller: Caller,
    since: Annotated[
        Moment | None, Query(description="count quarantine from here (default: 24 h ago)")
    ] = None,
) -> IngestHealth:
    """Quarantine counts per device and reason; for the operator also each live ingestor
    (readings/s, lag, totals, queue) and the broker's dropped-message counter."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return ingest.ingest_health(conn, caller, now=_now(request), since=since)


@router.get("/v1/devices/{device_id}/quarantine")
def device_quarantine(
    device_id: Id,
    conn: ReadConn,
    caller: Caller,
    before: Annotated[
        int | None, Query(ge=0, le=INT8_MAX, description="next_before of the last page")
    ] = None,
    limit: Limit = 50,
) -> QuarantinePage:
    """What ingest rejected from this device, newest first, with reason and raw payload."""
    return ingest.device_quarantine(conn, caller, device_id, before=before, limit=limit)


class _HealthCollector(Collector):
    def __init__(self, health: IngestHealth) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        quarantined = GaugeMetricFamily(
            "fleetcare_quarantined_24h",
            "items quarantined in the last 24 h, per device and reason",
            labels=["device", "reason"],
        )
        for q in self.health.quarantine:
            quarantined.add_metric([q.device_ref or "", q.reason], q.count)
        yield quarantined
        stored = CounterMetricFamily(
            "fleetcare_ingestor_readings_stored", "readings stored", labels=["ingestor"]
        )
        rate = GaugeMetricFamily(
            "fleetcare_ingestor_readings_per_second", "readings per second", labels=["ingestor"]
        )
        lag = GaugeMetricFamily(
            "fleetcare_ingestor_lag_seconds", "receipt to commit", labels=["ingestor"]
        )
        for i in self.health.ingestors:
            stored.add_metric([i.client_id], i.stored_total)
            rate.add_metric([i.client_id], i.readings_per_s)
            lag.add_metric([i.client_id], i.lag_s)
        yield from (stored, rate, lag)
        if self.health.broker_dropped is not None:
            yield GaugeMetricFamily(
                "fleetcare_broker_dropped_messages",
                "the broker's $SYS/broker/publish/messages/dropped",
                value=self.health.broker_dropped,
            )


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, conn: ReadConn, caller: Caller) -> Response:
    """Prometheus exposition of ingest health (operator key: scrape with a bearer token)."""
    caller.require("ingest:operate")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HealthCollector(ingest.ingest_health(conn, caller, now=_now(request))))
    body: Any = generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
