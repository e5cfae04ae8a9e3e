"""Roles and what each may do: the one answer to "may this caller do that?".

An action is ``<area>:<verb>`` (``assets:read``, ``orders:write``, ``orders:work``). A role is
``<organisation>:<role>`` — the operator's admin, dispatcher and billing; a customer's admin,
fleet manager, viewer and technician; a partner's technician — and holds a fixed set of
actions (:data:`ROLE_ACTIONS`). An API key may narrow its role with scopes (``assets:read``,
``orders:write``, or ``read`` / ``write`` for every area): a scope ``<area>:write`` allows every
action of the area, ``<area>:read`` only its reads. ``Principal.can`` asks this module and
nothing else; the API's route table (``api/permissions.py``) names the action of every route.

The keys of the first version had four roles; each maps to one role here (:data:`KEY_ROLES`):
an operator key is the operator's admin, a customer key the customer's admin, a technician key
the customer's technician, a partner key the partner's technician.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Organisation = Literal["operator", "customer", "partner"]
Access = Literal[
    "operator:admin",
    "operator:dispatcher",
    "operator:billing",
    "customer:admin",
    "customer:fleet_manager",
    "customer:viewer",
    "customer:technician",
    "partner:technician",
]
ACCESS_ROLES: Final[tuple[Access, ...]] = get_args(Access)

# The areas, each with what it covers (docs/access.md prints this).
AREAS: Final[dict[str, str]] = {
    "customers": "customers (the operator's registry of organisations)",
    "sites": "sites of a customer",
    "assets": "assets, their usage and predictions",
    "devices": "devices (gateways) and their quarantined messages",
    "telemetry": "telemetry readings and history imports",
    "catalogue": "asset kinds, metrics, payload profiles and parts (read by everyone)",
    "models": "wear model versions",
    "plans": "plans",
    "subscriptions": "subscriptions and the assets they cover",
    "orders": "maintenance orders and failure reports",
    "logistics": "depots (read by customers: where parts come from)",
    "inventory": "stock levels of depots and replenishments (the operator's)",
    "shipments": "shipments of parts",
    "partners": "service partners, their sites, commissions and statements",
    "webhooks": "webhook endpoints, deliveries and replays",
    "billing": "usage, invoices and plan advice",
    "revenue": "the operator's revenue: recognised, deferred, journal entries",
    "ingest": "ingest health (and, to operate it, the Prometheus scrape)",
    "audit": "the audit trail of changes",
    "users": "people of an organisation, and how they sign in (single sign-on)",
    "keys": "API keys of an organisation",
    "dashboard": "the operations dashboard's pages",
}

VERBS: Final[dict[str, str]] = {
    "read": "see",
    "write": "create, change, retire",
    "work": "schedule, start and complete (orders); deliver (shipments)",
    "schedule": "set the date of an order",
    "report": "report a failure",
    "override": "moves only the operator makes (a subscription past due, any status move)",
    "operate": "run the service (scrape ingest metrics)",
    "profile": "keep a customer's legal details for invoices",
}

ALL_READS: Final = frozenset(f"{area}:read" for area in AREAS)
# a customer's people read their own organisation's everything but its keys and users, and
# none of the operator's stock or its partners
CUSTOMER_READS: Final = ALL_READS - {
    "keys:read",
    "users:read",
    "inventory:read",
    "partners:read",
    "audit:read",
    "revenue:read",
}
FLEET_WRITES: Final = frozenset(
    {
        "sites:write",
        "assets:write",
        "devices:write",
        "telemetry:write",
        "orders:write",
        "orders:schedule",
        "orders:report",
    }
)
FIELD_WORK: Final = frozenset({"orders:schedule", "orders:work", "shipments:work"})

OPERATOR_WRITES: Final = frozenset(
    {f"{area}:write" for area in AREAS if area not in ("dashboard", "ingest")}
    | {"orders:work", "orders:schedule", "orders:report", "shipments:work"}
    | {"subscriptions:override", "ingest:operate", "billing:profile"}
)

ROLE_ACTIONS: Final[dict[Access, frozenset[str]]] = {
    "operator:admin": ALL_READS | OPERATOR_WRITES,
    "operator:dispatcher": ALL_READS - {"keys:read", "users:read"}
    | {
        "orders:write",
        "orders:schedule",
        "orders:work",
        "orders:report",
        "shipments:write",
        "shipments:work",
        "logistics:write",
        "inventory:write",
    },
    "operator:billing": ALL_READS - {"keys:read", "users:read"}
    | {"plans:write", "billing:write", "billing:profile", "subscriptions:override"},
    "customer:admin": CUSTOMER_READS
    | {"keys:read", "users:read", "audit:read", "billing:profile"}
    | FLEET_WRITES
    | {"users:write", "keys:write", "webhooks:write", "subscriptions:write"},
    "customer:fleet_manager": CUSTOMER_READS | {"users:read"} | FLEET_WRITES,
    "customer:viewer": CUSTOMER_READS,
    "customer:technician": CUSTOMER_READS - {"billing:read", "webhooks:read"}
    | FIELD_WORK
    | {"orders:report"},
    "partner:technician": frozenset(
        {
            "orders:read",
            "assets:read",
            "shipments:read",
            "catalogue:read",
            "partners:read",
            "dashboard:read",
        }
    )
    | FIELD_WORK,
}

# The roles of the first version's API keys, and the role each stands for.
KeyRole = Literal["operator", "customer", "technician", "partner"]
KEY_ROLES: Final[dict[KeyRole, Access]] = {
    "operator": "operator:admin",
    "customer": "customer:admin",
    "technician": "customer:technician",
    "partner": "partner:technician",
}

# Which roles each organisation's users may hold (``users.role`` is the part after the colon).
ORG_ROLES: Final[dict[Organisation, tuple[str, ...]]] = {
    "operator": ("admin", "dispatcher", "billing"),
    "customer": ("admin", "fleet_manager", "viewer", "technician"),
    "partner": ("technician",),
}


def key_role_of(access: str) -> KeyRole:
    """The first version's role that stands closest to ``access`` (what scoping reads)."""
    if access.startswith("operator:"):
        return "operator"
    if access.startswith("partner:"):
        return "partner"
    return "technician" if access == "customer:technician" else "customer"


def scope_allows(scopes: frozenset[str], action: str) -> bool:
    """Whether a key's ``scopes`` cover ``action`` (``area:write`` covers the whole area)."""
    area, _, verb = action.partition(":")
    if f"{area}:write" in scopes or "write" in scopes:
        return True
    return verb == "read" and (f"{area}:read" in scopes or "read" in scopes)


def valid_scope(scope: str) -> bool:
    """A scope a key may carry: ``read``, ``write``, ``<area>:read`` or ``<area>:write``."""
    if scope in ("read", "write"):
        return True
    area, _, level = scope.partition(":")
    return area in AREAS and level in ("read", "write")


def role_allows(access: Access, action: str) -> bool:
    """Whether ``access`` holds ``action`` (before any key scope narrows it)."""
    return action in ROLE_ACTIONS[access]
