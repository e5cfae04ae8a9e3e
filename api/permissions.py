"""What every route needs: one table of (method, route) → action, asked in one place.

Every route of the API and of the dashboard that a caller reaches signed in has an entry here
(reads too): the ``Caller`` dependency (API) and the dashboard's viewer dependency run
:func:`require_permission` before the route does, and refuse with 403 what
``Principal.can`` says no to — ``role_not_permitted`` when the caller's role lacks the action,
``scope_not_permitted`` when its key's scopes leave it out. A route with no entry is refused
for everyone (fail closed), and ``tests/test_api_roles.py`` fails until it has one. Routes
anyone may call (health, sign-in) are listed in :data:`PUBLIC`. The services ask the same
question (``principal.can`` / ``principal.require``) for the finer rules (a partner's own
orders, the operator's subscription moves). ``fleetcare access table`` prints all of it as
``docs/access.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from fastapi.routing import APIRoute

from fleet.access import ACCESS_ROLES, Access
from fleet.schemas import Principal
from fleetcare.errors import Forbidden

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

ACTIONS: Final[dict[tuple[str, str], str]] = {
    # who am I
    ("GET", "/v1/me"): "dashboard:read",
    # the customer registry: the operator creates customers; a customer manages its fleet
    ("POST", "/v1/customers"): "customers:write",
    ("GET", "/v1/customers"): "customers:read",
    ("GET", "/v1/customers/{customer_id}"): "customers:read",
    ("PATCH", "/v1/customers/{customer_id}"): "customers:write",
    ("DELETE", "/v1/customers/{customer_id}"): "customers:write",
    ("POST", "/v1/sites"): "sites:write",
    ("GET", "/v1/sites"): "sites:read",
    ("GET", "/v1/sites/{site_id}"): "sites:read",
    ("PATCH", "/v1/sites/{site_id}"): "sites:write",
    ("DELETE", "/v1/sites/{site_id}"): "sites:write",
    ("POST", "/v1/assets"): "assets:write",
    ("GET", "/v1/assets"): "assets:read",
    ("GET", "/v1/assets/{asset_id}"): "assets:read",
    ("PATCH", "/v1/assets/{asset_id}"): "assets:write",
    ("DELETE", "/v1/assets/{asset_id}"): "assets:write",
    ("GET", "/v1/assets/{asset_id}/predictions"): "assets:read",
    ("GET", "/v1/assets/{asset_id}/usage"): "billing:read",
    ("GET", "/v1/metrics-catalogue"): "catalogue:read",
    # people and keys of an organisation
    ("POST", "/v1/users"): "users:write",
    ("GET", "/v1/users"): "users:read",
    ("GET", "/v1/users/{user_id}"): "users:read",
    ("PATCH", "/v1/users/{user_id}"): "users:write",
    # an organisation's single sign-on (OpenID Connect provider; its secret is write-only)
    ("GET", "/v1/sso"): "users:read",
    ("PUT", "/v1/sso"): "users:write",
    ("DELETE", "/v1/sso"): "users:write",
    ("POST", "/v1/api-keys"): "keys:write",
    ("GET", "/v1/api-keys"): "keys:read",
    ("GET", "/v1/api-keys/{key_id}"): "keys:read",
    ("DELETE", "/v1/api-keys/{key_id}"): "keys:write",
    # devices and telemetry
    ("POST", "/v1/devices"): "devices:write",
    ("GET", "/v1/devices"): "devices:read",
    ("GET", "/v1/devices/{device_id}"): "devices:read",
    ("PATCH", "/v1/devices/{device_id}"): "devices:write",
    ("DELETE", "/v1/devices/{device_id}"): "devices:write",
    ("GET", "/v1/devices/{device_id}/quarantine"): "devices:read",
    ("POST", "/v1/history/import"): "telemetry:write",
    ("GET", "/v1/ingest/health"): "ingest:read",
    ("GET", "/metrics"): "ingest:operate",
    # the operator's catalogue: payload profiles, asset kinds, parts, plans, models
    ("POST", "/v1/profiles"): "catalogue:write",
    ("GET", "/v1/profiles"): "catalogue:read",
    ("GET", "/v1/profiles/{profile_name}"): "catalogue:read",
    ("POST", "/v1/kinds"): "catalogue:write",
    ("GET", "/v1/kinds"): "catalogue:read",
    ("GET", "/v1/kinds/{kind}"): "catalogue:read",
    ("GET", "/v1/parts"): "catalogue:read",
    ("GET", "/v1/parts/{part_id}"): "catalogue:read",
    ("POST", "/v1/plans"): "plans:write",
    ("GET", "/v1/plans"): "plans:read",
    ("GET", "/v1/plans/{plan_id}"): "plans:read",
    ("DELETE", "/v1/plans/{plan_id}"): "plans:write",
    ("GET", "/v1/models/versions"): "models:read",
    ("GET", "/v1/models/versions/{version_id}"): "models:read",
    ("POST", "/v1/models/versions/{version_id}/promote"): "models:write",
    ("POST", "/v1/models/{kind}/rollback"): "models:write",
    # subscriptions: the customer's admin and the operator (some moves are the operator's)
    ("POST", "/v1/subscriptions"): "subscriptions:write",
    ("GET", "/v1/subscriptions"): "subscriptions:read",
    ("GET", "/v1/subscriptions/{subscription_id}"): "subscriptions:read",
    ("PATCH", "/v1/subscriptions/{subscription_id}"): "subscriptions:write",
    ("POST", "/v1/subscriptions/{subscription_id}/activate"): "subscriptions:write",
    ("POST", "/v1/subscriptions/{subscription_id}/pause"): "subscriptions:write",
    ("POST", "/v1/subscriptions/{subscription_id}/resume"): "subscriptions:write",
    ("POST", "/v1/subscriptions/{subscription_id}/past-due"): "subscriptions:override",
    ("POST", "/v1/subscriptions/{subscription_id}/cancel"): "subscriptions:write",
    ("POST", "/v1/subscriptions/{subscription_id}/plan-changes"): "subscriptions:write",
    ("POST", "/v1/subscriptions/{subscription_id}/assets"): "subscriptions:write",
    ("DELETE", "/v1/subscriptions/{subscription_id}/assets/{asset_id}"): "subscriptions:write",
    # orders: raised and cancelled by the customer; worked by technicians and partners
    ("POST", "/v1/orders"): "orders:write",
    ("GET", "/v1/orders"): "orders:read",
    ("GET", "/v1/orders/{order_id}"): "orders:read",
    ("POST", "/v1/orders/{order_id}/schedule"): "orders:schedule",
    ("POST", "/v1/orders/{order_id}/start"): "orders:work",
    ("POST", "/v1/orders/{order_id}/complete"): "orders:work",
    ("POST", "/v1/orders/{order_id}/cancel"): "orders:write",
    ("POST", "/v1/failures"): "orders:report",
    ("GET", "/v1/missed-predictions"): "orders:read",
    # logistics: the operator runs depots and shipping; delivery is confirmed on site
    ("GET", "/v1/depots"): "logistics:read",
    ("POST", "/v1/depots"): "logistics:write",
    ("GET", "/v1/depots/{depot_id}"): "logistics:read",
    ("GET", "/v1/depots/{depot_id}/inventory"): "inventory:read",
    ("PUT", "/v1/depots/{depot_id}/inventory/{part_id}"): "inventory:write",
    ("GET", "/v1/replenishments"): "inventory:read",
    ("POST", "/v1/replenishments/{replenishment_id}/receive"): "inventory:write",
    ("GET", "/v1/shipments"): "shipments:read",
    ("GET", "/v1/shipments/{shipment_id}"): "shipments:read",
    ("POST", "/v1/shipments/{shipment_id}/ship"): "shipments:write",
    ("POST", "/v1/shipments/{shipment_id}/deliver"): "shipments:work",
    ("POST", "/v1/partners"): "partners:write",
    ("GET", "/v1/partners"): "partners:read",
    ("GET", "/v1/partners/{partner_id}"): "partners:read",
    ("POST", "/v1/partners/{partner_id}/sites"): "partners:write",
    ("POST", "/v1/partners/{partner_id}/api-keys"): "partners:write",
    ("GET", "/v1/partners/{partner_id}/commissions"): "partners:read",
    ("GET", "/v1/partners/{partner_id}/statement"): "partners:read",
    # webhooks: the customer's own endpoints
    ("POST", "/v1/webhooks/endpoints"): "webhooks:write",
    ("GET", "/v1/webhooks/endpoints"): "webhooks:read",
    ("GET", "/v1/webhooks/endpoints/{endpoint_id}"): "webhooks:read",
    ("PATCH", "/v1/webhooks/endpoints/{endpoint_id}"): "webhooks:write",
    ("DELETE", "/v1/webhooks/endpoints/{endpoint_id}"): "webhooks:write",
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/rotate-secret"): "webhooks:write",
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/test"): "webhooks:write",
    ("GET", "/v1/webhooks/endpoints/{endpoint_id}/deliveries"): "webhooks:read",
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/replay"): "webhooks:write",
    ("GET", "/v1/webhooks/deliveries/{delivery_id}"): "webhooks:read",
    ("GET", "/v1/webhooks/events/{public_id}/deliveries"): "webhooks:read",
    ("POST", "/v1/webhooks/events/{public_id}/replay"): "webhooks:write",
    # billing: the operator closes and issues; customers read their own
    ("POST", "/v1/billing/close"): "billing:write",
    ("GET", "/v1/invoices"): "billing:read",
    ("GET", "/v1/invoices/{invoice_id}"): "billing:read",
    ("GET", "/v1/invoices/{invoice_id}/lines"): "billing:read",
    ("GET", "/v1/invoices/{invoice_id}/lines.csv"): "billing:read",
    ("GET", "/v1/invoices.csv"): "billing:read",
    ("POST", "/v1/invoices/{invoice_id}/issue"): "billing:write",
    ("POST", "/v1/invoices/{invoice_id}/pay"): "billing:write",
    ("POST", "/v1/invoices/{invoice_id}/void"): "billing:write",
    ("GET", "/v1/usage"): "billing:read",
    ("GET", "/v1/customers/{customer_id}/plan-advice"): "billing:read",
    # invoice documents: corrections and the seller by the operator; a customer's legal details
    ("POST", "/v1/invoices/{invoice_id}/credit-notes"): "billing:write",
    ("GET", "/v1/invoices/{invoice_id}/pdf"): "billing:read",
    ("GET", "/v1/credit-notes"): "billing:read",
    ("GET", "/v1/credit-notes/{note_id}"): "billing:read",
    ("GET", "/v1/credit-notes/{note_id}/pdf"): "billing:read",
    ("GET", "/v1/service-credits"): "billing:read",
    ("GET", "/v1/tax-rates"): "billing:read",
    ("GET", "/v1/billing/seller"): "billing:read",
    ("PUT", "/v1/billing/seller"): "billing:write",
    ("GET", "/v1/customers/{customer_id}/billing-profile"): "billing:read",
    ("PUT", "/v1/customers/{customer_id}/billing-profile"): "billing:profile",
    # assets that move: the customer's carriers, itineraries and stations; lanes from the
    # operator's depots
    ("POST", "/v1/carriers"): "assets:write",
    ("GET", "/v1/carriers"): "assets:read",
    ("GET", "/v1/carriers/{carrier_id}"): "assets:read",
    ("PUT", "/v1/carriers/{carrier_id}/position"): "assets:write",
    ("GET", "/v1/carriers/{carrier_id}/positions"): "assets:read",
    ("GET", "/v1/carriers/{carrier_id}/assets"): "assets:read",
    ("PUT", "/v1/carriers/{carrier_id}/assets/{asset_id}"): "assets:write",
    ("DELETE", "/v1/carriers/{carrier_id}/assets/{asset_id}"): "assets:write",
    ("GET", "/v1/carriers/{carrier_id}/itinerary"): "assets:read",
    ("PUT", "/v1/carriers/{carrier_id}/itinerary"): "assets:write",
    ("POST", "/v1/itineraries"): "assets:write",
    ("GET", "/v1/sites/{site_id}/station"): "sites:read",
    ("PUT", "/v1/sites/{site_id}/station"): "sites:write",
    ("GET", "/v1/stations"): "sites:read",
    ("GET", "/v1/lanes"): "logistics:read",
    ("POST", "/v1/lanes"): "logistics:write",
    ("GET", "/v1/orders/{order_id}/visit"): "orders:read",
    # the customer's value report; the operator's revenue
    ("GET", "/v1/customers/{customer_id}/value-report"): "billing:read",
    ("GET", "/v1/customers/{customer_id}/value-report/pdf"): "billing:read",
    ("GET", "/v1/invoices/{invoice_id}/revenue-schedule"): "billing:read",
    ("GET", "/v1/revenue"): "revenue:read",
    ("GET", "/v1/revenue/journal.csv"): "revenue:read",
    # the back office: contracts' history, payments and dunning, SaaS metrics (the operator's)
    ("GET", "/v1/subscriptions/{subscription_id}/history"): "subscriptions:read",
    ("POST", "/v1/invoices/{invoice_id}/payments"): "billing:write",
    ("GET", "/v1/invoices/{invoice_id}/payments"): "billing:read",
    ("GET", "/v1/invoices/{invoice_id}/dunning"): "billing:read",
    ("GET", "/v1/billing/metrics"): "revenue:read",
    # wear models' drift and retraining
    ("GET", "/v1/models/{kind}/drift-checks"): "models:read",
    ("GET", "/v1/models/{kind}/retrain-decisions"): "models:read",
    # the model page: predictions against what technicians found (the caller's fleet)
    ("GET", "/v1/models/outcomes"): "models:read",
    # the audit trail: a customer's admin reads its organisation's, the operator every one
    ("GET", "/v1/audit"): "audit:read",
    ("GET", "/v1/audit/export.csv"): "audit:read",
    # the dashboard's pages and actions
    ("GET", "/dashboard"): "dashboard:read",
    ("GET", "/dashboard/live"): "dashboard:read",
    ("GET", "/dashboard/assets/{asset_id}"): "assets:read",
    ("GET", "/dashboard/assets/{asset_id}/predictions"): "assets:read",
    ("GET", "/dashboard/assets/{asset_id}/telemetry.json"): "telemetry:read",
    ("GET", "/dashboard/assets/{asset_id}/rul.json"): "assets:read",
    ("GET", "/dashboard/orders"): "orders:read",
    ("POST", "/dashboard/orders/{order_id}/{action}"): "orders:read",  # + ORDER_BOARD below
    ("GET", "/dashboard/shipments"): "shipments:read",
    ("POST", "/dashboard/shipments/{shipment_id}/receive"): "shipments:work",
    ("GET", "/dashboard/carriers"): "assets:read",
    ("GET", "/dashboard/carriers.json"): "assets:read",
    ("GET", "/dashboard/value-report"): "billing:read",
    ("GET", "/dashboard/value-report/pdf"): "billing:read",
    ("GET", "/dashboard/webhooks"): "webhooks:read",
    ("POST", "/dashboard/webhooks/deliveries/{delivery_id}/replay"): "webhooks:write",
    ("GET", "/dashboard/billing"): "billing:read",
    ("GET", "/dashboard/metrics"): "revenue:read",
    ("GET", "/dashboard/invoices/{invoice_id}"): "billing:read",
    ("GET", "/dashboard/invoices/{invoice_id}/pdf"): "billing:read",
    ("GET", "/dashboard/credit-notes/{note_id}/pdf"): "billing:read",
    ("GET", "/dashboard/service-credits"): "billing:read",
    ("GET", "/dashboard/quarantine"): "devices:read",
    ("GET", "/dashboard/audit"): "audit:read",
    ("GET", "/dashboard/audit.csv"): "audit:read",
    ("GET", "/dashboard/ingest"): "ingest:read",
    ("GET", "/dashboard/ingest/hourly"): "ingest:read",
    ("GET", "/dashboard/models"): "models:read",
    ("GET", "/dashboard/models/outcomes"): "models:read",
    ("GET", "/dashboard/people"): "users:read",
    ("POST", "/dashboard/people/invite"): "users:write",
    ("POST", "/dashboard/people/{user_id}"): "users:write",
    ("GET", "/dashboard/sso"): "users:read",
    ("POST", "/dashboard/sso"): "users:write",
    ("POST", "/dashboard/sso/delete"): "users:write",
    ("GET", "/dashboard/keys"): "keys:read",
    ("POST", "/dashboard/keys"): "keys:write",
    ("POST", "/dashboard/keys/{key_id}/revoke"): "keys:write",
}

# The orders board's buttons: each is the API's action of the same name.
ORDER_BOARD: Final[dict[str, str]] = {
    "schedule": "orders:schedule",
    "start": "orders:work",
    "complete": "orders:work",
    "cancel": "orders:write",
}

# Routes anyone may call: health, the OpenAPI documents, signing in and out (with a password
# or single sign-on), invitations and password resets (their tokens are the credential).
PUBLIC: Final = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
        ("GET", "/dashboard/login"),
        ("POST", "/dashboard/login"),
        ("POST", "/dashboard/logout"),
        ("GET", "/dashboard/invitation"),
        ("POST", "/dashboard/invitation"),
        ("GET", "/dashboard/reset"),
        ("POST", "/dashboard/reset"),
        ("GET", "/dashboard/reset/request"),
        ("POST", "/dashboard/reset/request"),
        # single sign-on: leaving for the organisation's provider and coming back (the
        # provider's signed ID token, checked against this browser's state, is the credential)
        ("POST", "/dashboard/sso/start"),
        ("GET", "/dashboard/sso/callback"),
    }
)


# Routes a device calls with its own credentials (HTTP Basic, the MQTT user and password): a
# device is not a principal and may only send readings for its customer's assets.
DEVICE_ROUTES: Final = frozenset({("POST", "/v1/telemetry"), ("POST", "/v1/telemetry/position")})


def action_for(method: str, route: str) -> str | None:
    """The action ``method route`` needs; None when the table has no entry."""
    return ACTIONS.get((method.upper(), route))


def require_permission(principal: Principal, method: str, route: str) -> None:
    """Forbidden unless ``principal`` may do what ``method route`` needs."""
    if method.upper() in ("HEAD", "OPTIONS"):
        method = "GET"
    action = action_for(method, route)
    if action is None:
        raise Forbidden(f"{method} {route} declares no permission", code="not_permitted")
    principal.require(action)


def allowed_roles(method: str, route: str) -> frozenset[Access]:
    """The roles whose principals may call ``method route`` (before any key scope)."""
    action = action_for(method, route)
    if action is None:
        return frozenset()
    return frozenset(a for a in ACCESS_ROLES if Principal(access=a).can(action))


def roles() -> tuple[Access, ...]:
    """Every role, in the order docs/access.md lists them."""
    return ACCESS_ROLES


def app_routes(routes: Any) -> Iterator[tuple[str, str, APIRoute]]:
    """(method, path, route) of every route of an app, walking included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods or ()):
                if method not in ("HEAD", "OPTIONS"):
                    yield method, route.path, route
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.13x wraps includes
        if inner is not None:
            yield from app_routes(inner.routes)
        elif hasattr(route, "methods") and not isinstance(route, APIRoute):
            for method in sorted(route.methods or ()):
                if method not in ("HEAD", "OPTIONS"):
                    yield method, route.path, route
