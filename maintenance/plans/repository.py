"""All SQL of plans."""

from __future__ import annotations

from psycopg.rows import class_row

from fleetcare.repository import fetch_one, fetch_page, insert_row, update_row
from maintenance.common import Conn
from maintenance.plans.schemas import Plan

__all__ = ["fetch_one", "fetch_page", "find_plan_by_code", "insert_row", "update_row"]


def find_plan_by_code(conn: Conn, code: str) -> Plan | None:
    """The plan with this code (retired ones included)."""
    with conn.cursor(row_factory=class_row(Plan)) as cur:
        return cur.execute("SELECT * FROM plans WHERE code = %s", (code,)).fetchone()


def get_plan(conn: Conn, plan_id: int) -> Plan | None:
    """The plan with this id."""
    return fetch_one(conn, "plans", Plan, plan_id, scope=None)
