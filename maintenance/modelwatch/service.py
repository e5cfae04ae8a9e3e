"""The model watch: is each kind's live fleet still what its model was trained on?

For every kind with an active model: run the drift check (``models.drift``: population
stability index per signal against the training reference stored with the version), and
when signals pass the threshold emit ``model.drift_detected`` — when a signal starts
drifting for the active version, not on every check while it drifts — to the operator and to
every customer with assets of the kind (their predictions are what drifts). Then retrain when
due: on drift (at most once a day) or on schedule (weekly); the challenger replaces the
champion only when it is better on the same held-out lifetimes, and each decision is
recorded. The watch lives in maintenance, not in models, because it writes events (the
outbox); it reaches the models through their service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fleet import service as fleet
from maintenance.common import Conn
from maintenance.events.service import emit
from models import service as models
from models.drift import DEFAULT_LOOKBACK, DEFAULT_THRESHOLD
from models.schemas import DriftCheck, RetrainTrigger

RETRAIN_EVERY = timedelta(days=7)
RETRAIN_ON_DRIFT_AFTER = timedelta(days=1)  # drift retrains at most this often


@dataclass(frozen=True)
class WatchSettings:
    """How the watch judges drift and when it retrains."""

    threshold: float = DEFAULT_THRESHOLD
    lookback: timedelta = DEFAULT_LOOKBACK
    retrain_every: timedelta = RETRAIN_EVERY
    retrain_on_drift_after: timedelta = RETRAIN_ON_DRIFT_AFTER


def drift_payload(check: DriftCheck, new: list[str]) -> dict[str, Any]:
    """The body of ``model.drift_detected`` (``new``: the signals that were not drifting at
    the previous check)."""
    return {
        "kind": check.kind,
        "model_version_id": check.model_version_id,
        "check_id": check.id,
        "checked_at": check.checked_at.isoformat(),
        "threshold": check.threshold,
        "max_psi": check.max_psi,
        "signals": {name: check.psi[name] for name in check.drifted_signals},
        "new_signals": new,
        "assets": check.assets,
        "rows": check.rows,
    }


def check_kind(
    conn: Conn, kind: str, now: datetime, settings: WatchSettings
) -> tuple[DriftCheck | None, bool]:
    """Run one drift check of ``kind``; (the check, whether it raised the event)."""
    previous = models.latest_drift_check(conn, kind)
    check = models.run_drift_check(
        conn, kind, now, threshold=settings.threshold, lookback=settings.lookback
    )
    if check is None or not check.drifted:
        return check, False
    already = set()
    if previous is not None and previous.model_version_id == check.model_version_id:
        already = set(previous.drifted_signals)
    if not set(check.drifted_signals) - already:
        return check, False  # still drifting the same way: said when it started
    payload = drift_payload(check, [n for n in check.drifted_signals if n not in already])
    subject = f"model_version:{check.model_version_id}"
    emit(conn, "model.drift_detected", payload, customer_id=None, subject=subject)
    for customer_id in fleet.customers_with_assets_of_kind(conn, kind):
        emit(conn, "model.drift_detected", payload, customer_id=customer_id, subject=subject)
    return check, True


def retrain_trigger(
    conn: Conn, kind: str, now: datetime, drifted: bool, settings: WatchSettings
) -> RetrainTrigger | None:
    """Why ``kind`` should be retrained now, or None when it need not be."""
    last = models.last_trained_at(conn, kind)
    if drifted and (last is None or now - last >= settings.retrain_on_drift_after):
        return "drift"
    if last is None or now - last >= settings.retrain_every:
        return "schedule"
    return None
