"""Plans: the operator's catalogue; everybody may read it. No SQL text, no HTTP."""

from __future__ import annotations

from fleet.schemas import Principal
from fleet.service import translate_integrity_errors
from fleetcare.errors import NotFound
from kinds.service import require_kind
from maintenance.common import Conn, subject
from maintenance.events.service import emit
from maintenance.plans import repository as repo
from maintenance.plans.schemas import Plan, PlanCreate


def list_plans(
    conn: Conn, *, after: int | None, limit: int, include_retired: bool = False
) -> tuple[list[Plan], int | None]:
    """The plan catalogue, one page."""
    return repo.list_plans(conn, include_retired=include_retired, after=after, limit=limit)


def get_plan(conn: Conn, plan_id: int) -> Plan:
    """One plan, or NotFound."""
    plan = repo.get_plan(conn, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} not found", code="plan_not_found")
    return plan


def create_plan(conn: Conn, principal: Principal, body: PlanCreate) -> Plan:
    """Add a plan to the catalogue (operator)."""
    principal.require("plans:write")
    for i, kind in enumerate(body.kinds):
        require_kind(conn, kind, where=f"kinds[{i}]")
    with translate_integrity_errors(f"plan {body.code!r}"):
        plan = repo.insert_plan(conn, body.model_dump())
    emit(
        conn,
        "plan.created",
        {"plan": plan.model_dump(mode="json")},
        customer_id=None,
        subject=subject("plan", plan.id),
    )
    return plan


def retire_plan(conn: Conn, principal: Principal, plan_id: int) -> Plan:
    """Withdraw a plan from sale; existing subscriptions keep it (operator)."""
    principal.require("plans:write")
    plan = get_plan(conn, plan_id)
    if plan.retired_at is not None:
        return plan
    row = repo.retire_plan(conn, plan.id)
    emit(
        conn,
        "plan.retired",
        {"plan_id": plan.id},
        customer_id=None,
        subject=subject("plan", plan.id),
    )
    return row
