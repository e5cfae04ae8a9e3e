"""Who may write what: one table of (method, route) → roles, asked in one place.

Every write operation (POST, PUT, PATCH, DELETE) of the API that an API key calls has an
entry; :func:`require_permission` (run by the ``Caller`` dependency for every such route)
refuses the roles the table does not list with 403 before the route runs. A write route with
no entry is refused for everyone (fail closed) — and the test of the table fails. The services
keep their finer rules (the operator-only subscription moves, a partner's own orders), but no
role can do more than this table says. Reads are confined by the tenant wall (customer scope),
not by this table.
"""

from __future__ import annotations

from typing import Final

from fleet.schemas import Principal, Role
from fleetcare.errors import Forbidden

OPERATOR: Final = frozenset({"operator"})
CUSTOMER: Final = frozenset({"operator", "customer"})
FIELD_WORK: Final = frozenset({"operator", "technician", "partner"})
ORDER_UPDATE: Final = frozenset({"operator", "customer", "technician", "partner"})
FAILURE_REPORT: Final = frozenset({"operator", "customer", "technician"})

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

PERMISSIONS: Final[dict[tuple[str, str], frozenset[str]]] = {
    # the customer registry: the operator creates customers; a customer manages its fleet
    ("POST", "/v1/customers"): OPERATOR,
    ("PATCH", "/v1/customers/{customer_id}"): OPERATOR,
    ("DELETE", "/v1/customers/{customer_id}"): OPERATOR,
    ("POST", "/v1/sites"): CUSTOMER,
    ("PATCH", "/v1/sites/{site_id}"): CUSTOMER,
    ("DELETE", "/v1/sites/{site_id}"): CUSTOMER,
    ("POST", "/v1/assets"): CUSTOMER,
    ("PATCH", "/v1/assets/{asset_id}"): CUSTOMER,
    ("DELETE", "/v1/assets/{asset_id}"): CUSTOMER,
    ("POST", "/v1/api-keys"): CUSTOMER,
    ("DELETE", "/v1/api-keys/{key_id}"): CUSTOMER,
    ("POST", "/v1/devices"): CUSTOMER,
    ("PATCH", "/v1/devices/{device_id}"): CUSTOMER,
    ("DELETE", "/v1/devices/{device_id}"): CUSTOMER,
    ("POST", "/v1/history/import"): CUSTOMER,
    # the operator's catalogue: payload profiles, asset kinds, plans, models
    ("POST", "/v1/profiles"): OPERATOR,
    ("POST", "/v1/kinds"): OPERATOR,
    ("POST", "/v1/plans"): OPERATOR,
    ("DELETE", "/v1/plans/{plan_id}"): OPERATOR,
    ("POST", "/v1/models/versions/{version_id}/promote"): OPERATOR,
    ("POST", "/v1/models/{kind}/rollback"): OPERATOR,
    # subscriptions: the customer and the operator (the service keeps some moves to the operator)
    ("POST", "/v1/subscriptions"): CUSTOMER,
    ("PATCH", "/v1/subscriptions/{subscription_id}"): CUSTOMER,
    ("POST", "/v1/subscriptions/{subscription_id}/activate"): CUSTOMER,
    ("POST", "/v1/subscriptions/{subscription_id}/pause"): CUSTOMER,
    ("POST", "/v1/subscriptions/{subscription_id}/resume"): CUSTOMER,
    ("POST", "/v1/subscriptions/{subscription_id}/past-due"): OPERATOR,
    ("POST", "/v1/subscriptions/{subscription_id}/cancel"): CUSTOMER,
    ("POST", "/v1/subscriptions/{subscription_id}/plan-changes"): CUSTOMER,
    ("POST", "/v1/subscriptions/{subscription_id}/assets"): CUSTOMER,
    ("DELETE", "/v1/subscriptions/{subscription_id}/assets/{asset_id}"): CUSTOMER,
    # orders: raised and cancelled by the customer; worked by technicians and partners
    ("POST", "/v1/orders"): CUSTOMER,
    ("POST", "/v1/orders/{order_id}/schedule"): ORDER_UPDATE,
    ("POST", "/v1/orders/{order_id}/start"): FIELD_WORK,
    ("POST", "/v1/orders/{order_id}/complete"): FIELD_WORK,
    ("POST", "/v1/orders/{order_id}/cancel"): CUSTOMER,
    ("POST", "/v1/failures"): FAILURE_REPORT,
    # logistics: the operator runs depots and shipping; delivery is confirmed on site
    ("POST", "/v1/depots"): OPERATOR,
    ("PUT", "/v1/depots/{depot_id}/inventory/{part_id}"): OPERATOR,
    ("POST", "/v1/replenishments/{replenishment_id}/receive"): OPERATOR,
    ("POST", "/v1/shipments/{shipment_id}/ship"): OPERATOR,
    ("POST", "/v1/shipments/{shipment_id}/deliver"): FIELD_WORK,
    ("POST", "/v1/partners"): OPERATOR,
    ("POST", "/v1/partners/{partner_id}/sites"): OPERATOR,
    ("POST", "/v1/partners/{partner_id}/api-keys"): OPERATOR,
    # assets that move: the customer's carriers, itineraries and stations; lanes from the
    # operator's depots
    ("POST", "/v1/carriers"): CUSTOMER,
    ("PUT", "/v1/carriers/{carrier_id}/position"): CUSTOMER,
    ("PUT", "/v1/carriers/{carrier_id}/assets/{asset_id}"): CUSTOMER,
    ("DELETE", "/v1/carriers/{carrier_id}/assets/{asset_id}"): CUSTOMER,
    ("PUT", "/v1/carriers/{carrier_id}/itinerary"): CUSTOMER,
    ("POST", "/v1/itineraries"): CUSTOMER,
    ("PUT", "/v1/sites/{site_id}/station"): CUSTOMER,
    ("POST", "/v1/lanes"): OPERATOR,
    # webhooks: the customer's own endpoints
    ("POST", "/v1/webhooks/endpoints"): CUSTOMER,
    ("PATCH", "/v1/webhooks/endpoints/{endpoint_id}"): CUSTOMER,
    ("DELETE", "/v1/webhooks/endpoints/{endpoint_id}"): CUSTOMER,
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/rotate-secret"): CUSTOMER,
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/test"): CUSTOMER,
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/replay"): CUSTOMER,
    ("POST", "/v1/webhooks/events/{public_id}/replay"): CUSTOMER,
    # billing: the operator
    ("POST", "/v1/billing/close"): OPERATOR,
    ("POST", "/v1/invoices/{invoice_id}/issue"): OPERATOR,
    ("POST", "/v1/invoices/{invoice_id}/pay"): OPERATOR,
    ("POST", "/v1/invoices/{invoice_id}/void"): OPERATOR,
    # invoice documents: corrections and the seller by the operator; a customer's legal details
    ("POST", "/v1/invoices/{invoice_id}/credit-notes"): OPERATOR,
    ("PUT", "/v1/billing/seller"): OPERATOR,
    ("PUT", "/v1/customers/{customer_id}/billing-profile"): CUSTOMER,
}


# Reads confined to some roles (other reads are open to every role, within its customer).
READ_PERMISSIONS: Final[dict[tuple[str, str], frozenset[str]]] = {
    # the audit trail: a customer's admin reads its organisation's, the operator every one
    ("GET", "/v1/audit"): CUSTOMER,
    ("GET", "/v1/audit/export.csv"): CUSTOMER,
}


def allowed_roles(method: str, route: str) -> frozenset[str] | None:
    """The roles that may call ``method route``; None for a read open to every role."""
    if method.upper() not in WRITES:
        return READ_PERMISSIONS.get((method.upper(), route))
    return PERMISSIONS.get((method.upper(), route), frozenset())


def require_permission(principal: Principal, method: str, route: str) -> None:
    """Forbidden unless ``principal``'s role may call ``method route`` (writes only)."""
    roles = allowed_roles(method, route)
    if roles is None or principal.role in roles:
        return
    if not roles:
        raise Forbidden(f"no role may call {method} {route}", code="not_permitted")
    who = ", ".join(sorted(roles))
    raise Forbidden(
        f"a {principal.role} key may not call {method} {route} ({who} only)",
        code="role_not_permitted",
    )


def roles() -> tuple[Role, ...]:
    """Every role, in the order the README lists them."""
    return ("operator", "customer", "technician", "partner")
