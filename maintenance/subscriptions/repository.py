"""All SQL of subscriptions, plan periods and coverage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import class_row, dict_row, scalar_row
from psycopg.types.json import Jsonb

from fleetcare.repository import fetch_one, fetch_page, insert_row, update_row
from maintenance.common import Conn
from maintenance.subscriptions.schemas import (
    ENTITLED_STATUSES,
    CoveredAsset,
    PlanPeriod,
    StatusPeriod,
    Subscription,
)


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` ready for the table (the entitlement overrides are jsonb)."""
    if "entitlement_overrides" in values:
        return {**values, "entitlement_overrides": Jsonb(values["entitlement_overrides"])}
    return values


def insert_subscription(conn: Conn, values: dict[str, Any]) -> Subscription:
    """Create a subscription (its plan period and assets are written separately)."""
    return insert_row(conn, "subscriptions", Subscription, _columns(values))


def get_subscription(conn: Conn, subscription_id: int, scope: int | None) -> Subscription | None:
    """A subscription when within ``scope`` (None: any customer's)."""
    return fetch_one(conn, "subscriptions", Subscription, subscription_id, scope=scope)


def lock_subscription(conn: Conn, subscription_id: int, scope: int | None) -> Subscription | None:
    """The subscription, row-locked, when within ``scope``."""
    return fetch_one(
        conn, "subscriptions", Subscription, subscription_id, scope=scope, for_update=True
    )


def set_fields(
    conn: Conn, subscription_id: int, values: dict[str, Any], now: datetime
) -> Subscription:
    """Update columns of a subscription and its updated_at."""
    row = update_row(
        conn,
        "subscriptions",
        Subscription,
        subscription_id,
        {**_columns(values), "updated_at": now},
    )
    assert row is not None
    return row


def list_subscriptions(
    conn: Conn,
    *,
    scope: int | None,
    customer_id: int | None,
    status: str | None,
    after: int | None,
    limit: int,
) -> tuple[list[Subscription], int | None]:
    """One page of subscriptions."""
    return fetch_page(
        conn,
        "subscriptions",
        Subscription,
        scope=scope,
        filters={"customer_id": customer_id, "status": status},
        include_retired=True,
        after=after,
        limit=limit,
    )


def periods(conn: Conn, subscription_id: int) -> list[PlanPeriod]:
    """The plan periods of a subscription, oldest first."""
    with conn.cursor(row_factory=class_row(PlanPeriod)) as cur:
        return cur.execute(
            "SELECT * FROM subscription_plan_periods WHERE subscription_id = %s"
            " ORDER BY effective_from",
            (subscription_id,),
        ).fetchall()


def insert_period(
    conn: Conn, subscription_id: int, plan_id: int, effective_from: datetime
) -> PlanPeriod:
    """Open a plan period (the previous open one must be closed first)."""
    return insert_row(
        conn,
        "subscription_plan_periods",
        PlanPeriod,
        {"subscription_id": subscription_id, "plan_id": plan_id, "effective_from": effective_from},
    )


def drop_future_periods(conn: Conn, subscription_id: int, now: datetime) -> None:
    """Forget a plan change that has not taken effect yet, reopening the current period."""
    conn.execute(
        "DELETE FROM subscription_plan_periods WHERE subscription_id = %s AND effective_from > %s",
        (subscription_id, now),
    )
    conn.execute(
        "UPDATE subscription_plan_periods SET effective_to = NULL"
        " WHERE subscription_id = %s AND effective_to > %s",
        (subscription_id, now),
    )


def close_open_period(conn: Conn, subscription_id: int, at: datetime) -> None:
    """End the open plan period at ``at``."""
    conn.execute(
        "UPDATE subscription_plan_periods SET effective_to = %s"
        " WHERE subscription_id = %s AND effective_to IS NULL",
        (at, subscription_id),
    )


def set_open_period_plan(conn: Conn, subscription_id: int, plan_id: int) -> None:
    """Change the plan of the open period in place (a change at the period's very start)."""
    conn.execute(
        "UPDATE subscription_plan_periods SET plan_id = %s"
        " WHERE subscription_id = %s AND effective_to IS NULL",
        (plan_id, subscription_id),
    )


def listed_assets(conn: Conn, subscription_id: int) -> list[int]:
    """Ids of the assets listed on a subscription."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(
            "SELECT asset_id FROM subscription_assets WHERE subscription_id = %s ORDER BY asset_id",
            (subscription_id,),
        ).fetchall()


def add_assets(
    conn: Conn, subscription_id: int, customer_id: int, asset_ids: list[int], at: datetime
) -> int:
    """List assets on a subscription from ``at`` (already listed ones are skipped; the
    listing history opens a stretch for each added one); how many were added."""
    added = 0
    for asset_id in asset_ids:
        cur = conn.execute(
            "INSERT INTO subscription_assets (subscription_id, customer_id, asset_id)"
            " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (subscription_id, customer_id, asset_id),
        )
        if cur.rowcount:
            conn.execute(
                "INSERT INTO subscription_asset_listings"
                " (customer_id, subscription_id, asset_id, listed_from) VALUES (%s, %s, %s, %s)",
                (customer_id, subscription_id, asset_id, at),
            )
        added += cur.rowcount
    return added


def remove_asset(conn: Conn, subscription_id: int, asset_id: int, at: datetime) -> bool:
    """Take an asset off a subscription at ``at`` (its listing stretch ends then); False when
    it was not listed."""
    cur = conn.execute(
        "DELETE FROM subscription_assets WHERE subscription_id = %s AND asset_id = %s",
        (subscription_id, asset_id),
    )
    conn.execute(
        "UPDATE subscription_asset_listings SET listed_to = greatest(listed_from, %s)"
        " WHERE subscription_id = %s AND asset_id = %s AND listed_to IS NULL",
        (at, subscription_id, asset_id),
    )
    return cur.rowcount > 0


def asset_kinds(conn: Conn, customer_id: int, asset_ids: list[int]) -> dict[int, str]:
    """Kinds of the customer's live assets among ``asset_ids``."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, kind FROM assets WHERE customer_id = %s AND id = ANY(%s)"
            " AND retired_at IS NULL",
            (customer_id, asset_ids),
        ).fetchall()
    return {r["id"]: r["kind"] for r in rows}


def covering(conn: Conn, asset_id: int, at: datetime) -> list[tuple[Subscription, int]]:
    """Entitled subscriptions covering the asset at ``at`` (listed or by its site), each with
    the id of its plan then."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """
            SELECT s.id AS s_id, pp.plan_id
              FROM assets a
              JOIN subscriptions s ON s.customer_id = a.customer_id
              JOIN subscription_plan_periods pp ON pp.subscription_id = s.id
                   AND pp.effective_from <= %(t)s
                   AND (pp.effective_to IS NULL OR pp.effective_to > %(t)s)
              JOIN plans p ON p.id = pp.plan_id
             WHERE a.id = %(a)s AND a.retired_at IS NULL
               AND s.status = ANY(%(entitled)s)
               AND s.starts_at <= %(t)s AND (s.ends_at IS NULL OR s.ends_at > %(t)s)
               AND a.kind = ANY(p.kinds)
               AND ((s.scope = 'site' AND s.site_id = a.site_id)
                    OR (s.scope = 'assets' AND EXISTS (
                        SELECT 1 FROM subscription_asset_listings sl
                         WHERE sl.subscription_id = s.id AND sl.asset_id = a.id
                           AND sl.listed_from <= %(t)s
                           AND (sl.listed_to IS NULL OR sl.listed_to > %(t)s))))
             ORDER BY s.id
            """,
            {"a": asset_id, "t": at, "entitled": list(ENTITLED_STATUSES)},
        ).fetchall()
    found: list[tuple[Subscription, int]] = []
    for r in rows:
        sub = fetch_one(conn, "subscriptions", Subscription, r["s_id"], scope=None)
        assert sub is not None
        found.append((sub, r["plan_id"]))
    return found


def subscriptions_in(
    conn: Conn, customer_id: int, start: datetime, end: datetime
) -> list[Subscription]:
    """A customer's subscriptions that were running at some time in ``[start, end)``."""
    with conn.cursor(row_factory=class_row(Subscription)) as cur:
        return cur.execute(
            """
            SELECT * FROM subscriptions
             WHERE customer_id = %(c)s AND starts_at < %(e)s
               AND (ends_at IS NULL OR ends_at > %(s)s)
             ORDER BY id
            """,
            {"c": customer_id, "s": start, "e": end},
        ).fetchall()


def covered_assets(conn: Conn, subscription: Subscription) -> list[CoveredAsset]:
    """Assets a subscription covers: the listed ones, or every asset of its site."""
    with conn.cursor(row_factory=class_row(CoveredAsset)) as cur:
        return cur.execute(
            """
            SELECT a.id, a.customer_id, a.ref, a.kind, a.installed_at, a.retired_at
              FROM assets a
             WHERE a.customer_id = %(c)s
               AND ((%(scope)s = 'site' AND a.site_id = %(site)s)
                    OR (%(scope)s = 'assets' AND EXISTS (
                        SELECT 1 FROM subscription_assets sa
                         WHERE sa.subscription_id = %(s)s AND sa.asset_id = a.id)))
             ORDER BY a.id
            """,
            {
                "c": subscription.customer_id,
                "scope": subscription.scope,
                "site": subscription.site_id,
                "s": subscription.id,
            },
        ).fetchall()


def covered_asset_stretches(conn: Conn, subscription: Subscription) -> list[CoveredAsset]:
    """Every asset a subscription covered at some time, once per stretch, with
    ``installed_at`` / ``retired_at`` narrowed to when it was covered: for a site, while the
    asset existed; for a list, while it was listed (subscription_asset_listings) and existed."""
    with conn.cursor(row_factory=class_row(CoveredAsset)) as cur:
        if subscription.scope == "site":
            return cur.execute(
                "SELECT id, customer_id, ref, kind, installed_at, retired_at FROM assets"
                " WHERE customer_id = %s AND site_id = %s ORDER BY id",
                (subscription.customer_id, subscription.site_id),
            ).fetchall()
        return cur.execute(
            """
            SELECT a.id, a.customer_id, a.ref, a.kind,
                   greatest(a.installed_at, l.listed_from) AS installed_at,
                   least(a.retired_at, l.listed_to) AS retired_at
              FROM subscription_asset_listings l JOIN assets a ON a.id = l.asset_id
             WHERE l.subscription_id = %s
             ORDER BY a.id, l.listed_from
            """,
            (subscription.id,),
        ).fetchall()


def due_for_lifecycle(conn: Conn, now: datetime, limit: int = 100) -> list[Subscription]:
    """Subscriptions whose trial or term has ended, locked (skipping ones others hold)."""
    with conn.cursor(row_factory=class_row(Subscription)) as cur:
        return cur.execute(
            """
            SELECT * FROM subscriptions
             WHERE status <> 'cancelled'
               AND ((status = 'trialing' AND trial_ends_at <= %(now)s)
                    OR current_term_ends_at <= %(now)s)
             ORDER BY id LIMIT %(limit)s
             FOR UPDATE SKIP LOCKED
            """,
            {"now": now, "limit": limit},
        ).fetchall()


def record_status(
    conn: Conn,
    subscription: Subscription,
    status: str,
    at: datetime,
    reason: str,
    now: datetime,
) -> None:
    """Close the open status row at ``at`` and open one for ``status`` from then."""
    with conn.cursor(row_factory=scalar_row) as cur:
        closed = cur.execute(
            "UPDATE subscription_status_history SET valid_to = greatest(valid_from, %s)"
            " WHERE subscription_id = %s AND valid_to IS NULL RETURNING valid_to",
            (at, subscription.id),
        ).fetchone()
    start = max(at, closed) if closed is not None else at
    conn.execute(
        "INSERT INTO subscription_status_history"
        " (customer_id, subscription_id, status, valid_from, reason, recorded_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (subscription.customer_id, subscription.id, status, start, reason, now),
    )


def status_history(conn: Conn, subscription_id: int) -> list[StatusPeriod]:
    """The status history of a subscription, oldest first."""
    with conn.cursor(row_factory=class_row(StatusPeriod)) as cur:
        return cur.execute(
            "SELECT * FROM subscription_status_history WHERE subscription_id = %s"
            " ORDER BY valid_from, id",
            (subscription_id,),
        ).fetchall()


def due_for_reminder(conn: Conn, now: datetime, limit: int = 100) -> list[Subscription]:
    """Running subscriptions whose term ends within their reminder days (terms longer than
    that lead only) and that were not reminded for this term, locked (skipping others')."""
    with conn.cursor(row_factory=class_row(Subscription)) as cur:
        return cur.execute(
            """
            SELECT * FROM subscriptions
             WHERE status <> 'cancelled'
               AND current_term_ends_at > %(now)s
               AND current_term_ends_at - make_interval(days => renewal_reminder_days) <= %(now)s
               -- a term shorter than the reminder lead (a monthly term) gets no reminder
               AND current_term_ends_at - make_interval(months => term_months)
                   < current_term_ends_at - make_interval(days => renewal_reminder_days)
               AND renewal_reminded_for IS DISTINCT FROM current_term_ends_at
             ORDER BY id LIMIT %(limit)s
             FOR UPDATE SKIP LOCKED
            """,
            {"now": now, "limit": limit},
        ).fetchall()
