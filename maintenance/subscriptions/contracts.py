"""Contract terms over time: trials that convert or end, renewal reminders, renewals and
non-renewals at term end. Run by the dispatch worker (``advance_lifecycles``); every step is
an event, and every status change a row of the status history. No SQL text, no HTTP."""

from __future__ import annotations

from datetime import datetime

from fleetcare.clock import Clock
from maintenance.common import Conn, subject
from maintenance.events.service import emit
from maintenance.subscriptions import repository as repo
from maintenance.subscriptions.schemas import (
    SUBSCRIPTION_LIFECYCLE,
    Subscription,
    SubscriptionStatus,
)
from maintenance.subscriptions.service import (
    _payload,
    _view,
    add_months,
    move_status,
    notice_deadline,
)


def _end_trial(conn: Conn, sub: Subscription, now: datetime) -> Subscription:
    """A trial that is over converts to paid (active) or ends (cancelled at its end)."""
    assert sub.trial_ends_at is not None
    if sub.trial_converts:
        move_status(
            conn,
            sub,
            SubscriptionStatus.ACTIVE,
            now,
            reason="trial_converted",
            effective_at=sub.trial_ends_at,
        )
    else:
        move_status(
            conn,
            sub,
            SubscriptionStatus.CANCELLED,
            now,
            reason="trial_ended",
            effective_at=sub.trial_ends_at,
        )
    updated = repo.get_subscription(conn, sub.id, None)
    assert updated is not None
    return updated


def _end_term(conn: Conn, sub: Subscription, now: datetime) -> None:
    """At the end of a term: cancel when a non-renewal takes effect now, else renew."""
    term_end = sub.current_term_ends_at
    stops = not sub.auto_renew or (
        sub.cancel_at_term_end
        and (sub.cancel_effective_at is None or sub.cancel_effective_at <= term_end)
    )
    if stops:
        SUBSCRIPTION_LIFECYCLE.check(sub.id, sub.status, SubscriptionStatus.CANCELLED)
        move_status(
            conn,
            sub,
            SubscriptionStatus.CANCELLED,
            now,
            reason="term_end",
            effective_at=term_end,
            extra={"renewed": False},
        )
        return
    while term_end <= now:
        # each term renewed is one row of the history (reason 'renewal'), so renewals count
        repo.record_status(conn, sub, sub.status, term_end, "renewal", now)
        term_end = add_months(term_end, sub.term_months)
    updated = repo.set_fields(conn, sub.id, {"current_term_ends_at": term_end}, now)
    emit(
        conn,
        "subscription.renewed",
        _payload(
            _view(conn, updated, now),
            previous_term_ends_at=sub.current_term_ends_at.isoformat(),
            term_ends_at=term_end.isoformat(),
        ),
        customer_id=sub.customer_id,
        subject=subject("subscription", sub.id),
    )


def send_renewal_reminders(conn: Conn, now: datetime) -> int:
    """Emit ``subscription.renewal_upcoming`` once per term, ``renewal_reminder_days`` before
    it ends; how many. Locked rows and the remembered term end keep it once per term even with
    several workers."""
    sent = 0
    for sub in repo.due_for_reminder(conn, now):
        renews = sub.auto_renew and not (
            sub.cancel_at_term_end
            and (
                sub.cancel_effective_at is None
                or sub.cancel_effective_at <= sub.current_term_ends_at
            )
        )
        updated = repo.set_fields(
            conn, sub.id, {"renewal_reminded_for": sub.current_term_ends_at}, now
        )
        emit(
            conn,
            "subscription.renewal_upcoming",
            _payload(
                _view(conn, updated, now),
                term_ends_at=sub.current_term_ends_at.isoformat(),
                renews=renews,
                next_term_ends_at=add_months(sub.current_term_ends_at, sub.term_months).isoformat()
                if renews
                else None,
                notice_deadline=notice_deadline(sub).isoformat(),
                days_left=(sub.current_term_ends_at - now).days,
            ),
            customer_id=sub.customer_id,
            subject=subject("subscription", sub.id),
        )
        sent += 1
    return sent


def advance_lifecycles(conn: Conn, clock: Clock) -> int:
    """End trials, send renewal reminders, renew terms and apply non-renewals that fell due;
    how many subscriptions changed."""
    now = clock.now()
    changed = 0
    for sub in repo.due_for_lifecycle(conn, now):
        if (
            sub.status == SubscriptionStatus.TRIALING
            and sub.trial_ends_at
            and sub.trial_ends_at <= now
        ):
            sub = _end_trial(conn, sub, now)
            changed += 1
        if sub.status == SubscriptionStatus.CANCELLED or sub.current_term_ends_at > now:
            continue
        _end_term(conn, sub, now)
        changed += 1
    return changed + send_renewal_reminders(conn, now)
