"""Demo data for `fleetcare up`: an operator key and two customers with sites and assets."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from psycopg import Connection

from fleet import repository as fleet_repo
from fleet import service as fleet
from fleet.schemas import Principal, SiteCreate
from fleetcare.clock import Clock
from fleetcare.db import connect
from fleetcare.settings import Settings
from simulators.desks import desks_for
from simulators.schemas import PHYSICS_KINDS, simulate_args

SCENARIO_FILE = Path(__file__).with_name("demo.yaml")


@dataclass(frozen=True)
class DemoFleet:
    """A simulated fleet of a demo customer and the plan its sites subscribe to."""

    customer: str
    plan_code: str
    assets: dict[str, int]  # kind: count
    seed: int = 1

    def simulate_args(self) -> list[str]:
        return ["--customer", self.customer, *simulate_args(self.assets), "--seed", str(self.seed)]


def _load_scenario(path: Path) -> dict[str, Any]:
    """The demo scenario file, checked for the parts this module reads."""
    try:
        data = yaml.safe_load(path.read_text())
        for key in ("customers", "plans", "fleets", "history_fleet", "depot"):
            if key not in data:
                raise ValueError(f"no {key!r}")
    except (OSError, yaml.YAMLError, ValueError, TypeError) as exc:
        raise RuntimeError(f"{path}: not a demo scenario: {exc}") from exc
    return cast(dict[str, Any], data)


_SCENARIO = _load_scenario(SCENARIO_FILE)
DEMO_CUSTOMERS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = tuple(
    (c["slug"], c["name"], tuple((s["ref"], s["name"], s["region"]) for s in c["sites"]))
    for c in _SCENARIO["customers"]
)
# The demo's plan catalogue (a real operator writes its own through POST /v1/plans).
DEMO_PLANS: tuple[dict[str, object], ...] = tuple(_SCENARIO["plans"])
DEMO_FLEETS = tuple(
    DemoFleet(f["customer"], f["plan"], dict(f["assets"]), int(f.get("seed", 1)))
    for f in _SCENARIO["fleets"]
)
# the fleet whose simulated lifetimes train the demo kinds' models on a first run
DEMO_HISTORY_FLEET: dict[str, int] = dict(_SCENARIO["history_fleet"])
# the kinds the demo simulates with their own physics, and trains a model of on a first run
DEMO_KINDS = tuple(k for k in PHYSICS_KINDS if any(k in f.assets for f in DEMO_FLEETS))
DEMO_DEPOT = (
    str(_SCENARIO["depot"]["code"]),
    str(_SCENARIO["depot"]["name"]),
    float(_SCENARIO["depot"]["latitude"]),
    float(_SCENARIO["depot"]["longitude"]),
)


def seed_plans(conn: Connection[Any]) -> int:
    """Add the demo plans that are missing (by code), without events; how many were added."""
    from maintenance.plans import repository as plans_repo
    from maintenance.plans.schemas import Plan, PlanCreate

    added = 0
    for data in DEMO_PLANS:
        body = PlanCreate.model_validate(data)
        if plans_repo.find_plan_by_code(conn, body.code) is None:
            plans_repo.insert_row(conn, "plans", Plan, body.model_dump())
            added += 1
    return added


def _valid_keys(conn: Connection[Any], keys_file: Path) -> dict[str, str]:
    """The keys of ``keys_file`` that still authenticate (none when there is no file)."""
    if not keys_file.exists():
        return {}
    valid = {}
    for name, key in json.loads(keys_file.read_text()).items():
        try:
            fleet.authenticate(conn, key)
            valid[name] = key
        except Exception:
            continue
    return valid


def _save_keys(keys_file: Path, keys: dict[str, str]) -> None:
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(keys, fh, indent=2)


# The demo's people: a first-time visitor signs in as one of them with the printed password.
DEMO_USERS = (
    ("operator", None, "admin", "operator@fleetcare.demo", "Olivia Operator"),
    ("customer", "acme-logistics", "fleet_manager", "fleet@acme.demo", "Frank Fleet"),
)


def seed_demo_users(
    database_url: str, data_dir: Path, settings: Settings | None = None
) -> list[tuple[str, str, str]]:
    """The demo users (made when missing, with random passwords written once to
    ``demo-users.json``, mode 0600): (email, password, role) each. A user whose password the
    file no longer holds gets a new one (only the demo's own users are touched). Passwords
    are hashed at the cost ``settings`` set (the library's without)."""
    import secrets

    from people import service as people

    cost = people.PasswordCost.from_settings(settings) if settings else people.LIBRARY_COST

    users_file = data_dir.resolve() / "demo-users.json"
    known: dict[str, str] = json.loads(users_file.read_text()) if users_file.exists() else {}
    out: list[tuple[str, str, str]] = []
    with connect(database_url) as conn:
        for organisation, slug, role, email, name in DEMO_USERS:
            with conn.transaction():
                customer_id = fleet.ensure_customer(conn, slug, slug).id if slug else None
                existing = people.find_user(conn, email)
                password = known.get(email)
                if existing is None:
                    password = secrets.token_urlsafe(12)
                    people.add_user(
                        conn,
                        organisation=organisation,  # type: ignore[arg-type]
                        email=email,
                        name=name,
                        role=role,
                        customer_id=customer_id,
                        password=password,
                        password_cost=cost,
                    )
                elif password is None:
                    password = secrets.token_urlsafe(12)
                    people.set_password(conn, existing.id, password, cost)
                known[email] = password
                out.append((email, password, f"{organisation}:{role}"))
    _save_keys(users_file, known)
    return out


def seed_demo(database_url: str, data_dir: Path) -> Path:
    """Create the demo operator and customers when missing; return the keys file.

    Keys are stored hashed in the database, so the whole keys are written once to a file
    readable only by this user; when that file's keys still work, they are reused.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    keys_file = data_dir / "demo-keys.json"
    operator = Principal(key_id=0, role="operator")
    with connect(database_url) as conn:
        with conn.transaction():
            seed_plans(conn)
            keys = _valid_keys(conn, keys_file)
            if "operator" not in keys:
                keys["operator"] = fleet.issue_api_key(
                    conn, role="operator", customer_id=None, name="demo operator"
                ).key
        for slug, name, sites in DEMO_CUSTOMERS:
            with conn.transaction():
                customer = fleet.ensure_customer(conn, slug, name)
                for ref, site_name, region in sites:
                    if fleet_repo.find_site_by_ref(conn, customer.id, ref) is None:
                        fleet.create_site(
                            conn,
                            operator,
                            SiteCreate(
                                customer_id=customer.id, ref=ref, name=site_name, region=region
                            ),
                        )
                if slug not in keys:
                    keys[slug] = fleet.issue_api_key(
                        conn, role="customer", customer_id=customer.id, name=f"demo {slug}"
                    ).key
    _save_keys(keys_file, keys)
    return keys_file


def loop_keys(database_url: str, data_dir: Path) -> dict[str, str]:
    """The keys the loop's simulated people use, made when missing (once the demo fleets are
    registered): ``courier`` (an operator key: carriers ship and deliver) and, per demo
    fleet, ``<customer>-technician`` (that customer's technician, who also reports its
    failures) and, for a fleet whose assets ride on carriers, ``<customer>-ops`` (its flight
    operations and truck dispatch desks). Kept like the demo keys, in a file readable only by
    this user."""
    keys_file = data_dir.resolve() / "loop-keys.json"
    with connect(database_url) as conn, conn.transaction():
        keys = _valid_keys(conn, keys_file)
        if "courier" not in keys:
            keys["courier"] = fleet.issue_api_key(
                conn, role="operator", customer_id=None, name="demo courier"
            ).key
        for demo in DEMO_FLEETS:
            name = f"{demo.customer}-technician"
            customer = fleet_repo.find_customer_by_slug(conn, demo.customer)
            if name not in keys and customer is not None:
                keys[name] = fleet.issue_api_key(
                    conn, role="technician", customer_id=customer.id, name=f"demo {name}"
                ).key
            ops = f"{demo.customer}-ops"  # its operations desks (carriers, itineraries)
            if desks_for(demo.assets) and ops not in keys and customer is not None:
                keys[ops] = fleet.issue_api_key(
                    conn, role="customer", customer_id=customer.id, name=f"demo {ops}"
                ).key
    _save_keys(keys_file, keys)
    return keys


def prepare_loop(
    database_url: str, data_dir: Path, receiver_url: str, clock: Clock
) -> dict[str, str]:
    """After the fleets are registered: subscribe their sites, stock a depot, and point each
    demo customer's webhooks at the demo receiver. Idempotent. Returns receiver secrets."""
    from maintenance.logistics import service as logistics
    from maintenance.logistics.schemas import DepotCreate, StockSet
    from maintenance.plans import service as plans
    from maintenance.subscriptions import service as subscriptions
    from maintenance.subscriptions.schemas import SubscriptionCreate

    secrets_file = data_dir.resolve() / "demo-webhook-secrets.json"
    secrets: dict[str, str] = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
    operator = Principal(key_id=0, role="operator")
    with connect(database_url) as conn:
        with conn.transaction():
            seed_plans(conn)
            plan_list, _ = plans.list_plans(conn, after=None, limit=100)
            by_code = {p.code: p for p in plan_list}
            depots, _ = logistics.list_depots(conn, after=None, limit=100)
            depot = next((d for d in depots if d.code == DEMO_DEPOT[0]), None)
            if depot is None:
                code, name, lat, lon = DEMO_DEPOT
                depot = logistics.create_depot(
                    conn, operator, DepotCreate(code=code, name=name, latitude=lat, longitude=lon)
                )
                parts, _ = logistics.list_parts(
                    conn, kind=None, component=None, after=None, limit=100
                )
                for part in parts:
                    stock = StockSet(on_hand=500, shipping_days=2)
                    logistics.set_stock(conn, operator, depot.id, part.id, stock)
        for demo in DEMO_FLEETS:
            with conn.transaction():
                customer = fleet_repo.find_customer_by_slug(conn, demo.customer)
                if customer is None:
                    continue
                owner = Principal(key_id=0, role="operator")
                existing, _ = subscriptions.list_subscriptions(
                    conn, owner, clock, customer_id=customer.id, status=None, after=None,
                    limit=500,
                )  # fmt: skip
                covered = {s.site_id for s in existing if s.site_id is not None}
                sites, _ = fleet.list_sites(
                    conn, owner, customer_id=customer.id, after=None, limit=500
                )
                for site in sites:
                    if site.id in covered:
                        continue
                    subscriptions.create_subscription(
                        conn, owner,
                        SubscriptionCreate(customer_id=customer.id, plan_id=by_code[
                            demo.plan_code].id, scope="site", site_id=site.id),
                        clock,
                    )  # fmt: skip
                _point_webhooks(conn, owner, customer.id, f"{receiver_url}/hooks/{demo.customer}",
                                demo.customer, secrets, clock)  # fmt: skip
    fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(secrets, fh, indent=2)
    return secrets


DEMO_RECEIVER = "demo receiver"  # the description of the demo customers' webhook endpoints


def _point_webhooks(
    conn: Connection[Any],
    owner: Principal,
    customer_id: int,
    url: str,
    name: str,
    secrets: dict[str, str],
    clock: Clock,
) -> None:
    """The customer's demo endpoint goes to ``url``: each run's receiver listens on a new
    port, so a later run moves the endpoint there (enabled again); one whose secret is no
    longer known (the data folder was removed) is replaced by a new endpoint."""
    from maintenance.webhooks import service as webhooks
    from maintenance.webhooks.schemas import EndpointCreate, EndpointUpdate

    listed, _ = webhooks.list_endpoints(
        conn, owner, customer_id=customer_id, enabled=None, include_retired=False, after=None,
        limit=100,
    )  # fmt: skip
    ours = [e for e in listed if e.description == DEMO_RECEIVER]
    if name in secrets and ours:
        for endpoint in ours:
            if endpoint.url != url or not endpoint.enabled:
                webhooks.update_endpoint(
                    conn, owner, endpoint.id, EndpointUpdate(url=url, enabled=True),
                    allow_private=True, now=clock.now(),
                )  # fmt: skip
        return
    for endpoint in ours:
        webhooks.delete_endpoint(conn, owner, endpoint.id, now=clock.now())
    created = webhooks.create_endpoint(
        conn, owner,
        EndpointCreate(customer_id=customer_id, url=url, description=DEMO_RECEIVER),
        allow_private=True,
    )  # fmt: skip
    secrets[name] = created.secret
