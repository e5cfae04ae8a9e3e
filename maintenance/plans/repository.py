"""All SQL of plans."""

from __future__ import annotations

from typing import Any

from psycopg.rows import class_row

from fleetcare.repository import fetch_one, fetch_page, insert_row, update_row
from maintenance.common import Conn
from maintenance.plans.schemas import Plan


def find_plan_by_code(conn: Conn, code: str) -> Plan | None:
    """The plan with this code (retired ones included)."""
    with conn.cursor(row_factory=class_row(Plan)) as cur:
        return cur.execute("SELECT * FROM plans WHERE code = %s", (code,)).fetchone()


def get_plan(conn: Conn, plan_id: int) -> Plan | None:
    """The plan with this id."""
    return fetch_one(conn, "plans", Plan, plan_id, scope=None)


def list_plans(
    conn: Conn, *, include_retired: bool, after: int | None, limit: int
) -> tuple[list[Plan], int | None]:
    """One page of the catalogue."""
    return fetch_page(
        conn, "plans", Plan, scope=None, include_retired=include_retired, after=after, limit=limit
    )


def insert_plan(conn: Conn, values: dict[str, Any]) -> Plan:
    """Add a plan."""
    return insert_row(conn, "plans", Plan, values)


def retire_plan(conn: Conn, plan_id: int) -> Plan:
    """Withdraw a plan from sale now."""
    row = update_row(conn, "plans", Plan, plan_id, {}, extra_sets=["retired_at = now()"])
    assert row is not None
    return row
