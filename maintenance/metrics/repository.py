"""All SQL of the SaaS metrics: the subscription records the computation reads."""

from __future__ import annotations

from datetime import datetime

from psycopg.rows import class_row

from maintenance.common import Conn
from maintenance.subscriptions.schemas import PlanPeriod, StatusPeriod, Subscription


def subscriptions_started_before(conn: Conn, end: datetime) -> list[Subscription]:
    """Every subscription that started before ``end``."""
    with conn.cursor(row_factory=class_row(Subscription)) as cur:
        return cur.execute(
            "SELECT * FROM subscriptions WHERE starts_at < %s ORDER BY id", (end,)
        ).fetchall()


def status_rows(conn: Conn, end: datetime) -> list[StatusPeriod]:
    """Every status history row that began before ``end``, by subscription and time."""
    with conn.cursor(row_factory=class_row(StatusPeriod)) as cur:
        return cur.execute(
            "SELECT * FROM subscription_status_history WHERE valid_from < %s"
            " ORDER BY subscription_id, valid_from, id",
            (end,),
        ).fetchall()


def plan_periods(conn: Conn, end: datetime) -> list[PlanPeriod]:
    """Every plan period that began before ``end``."""
    with conn.cursor(row_factory=class_row(PlanPeriod)) as cur:
        return cur.execute(
            "SELECT * FROM subscription_plan_periods WHERE effective_from < %s"
            " ORDER BY subscription_id, effective_from",
            (end,),
        ).fetchall()
