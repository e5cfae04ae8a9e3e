"""Registering a simulated fleet through the product, and recording what the simulator knows.

Registration goes through the same services as the API (customers, sites, assets, devices
with credentials) with an operator principal. Device secrets are shown once by the registry,
so the fleet's secrets are kept in a file of the data folder (readable by this user only),
as ``cli.demo`` does for API keys. No SQL text here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import Connection

from fleet import repository as fleet_repo
from fleet import service as fleet_service
from fleet.schemas import AssetCreate, CustomerCreate, Principal, SiteCreate
from fleetcare.errors import Conflict, Invalid
from ingest import profile_service
from ingest import service as devices
from ingest.schemas import DeviceCreate
from simulators import repository as repo
from simulators.failures import FailureReporter
from simulators.fleet import Fleet
from simulators.schemas import LifeEnd, TruthRow
from simulators.sparkplug_fleet import SparkplugSetup, sparkplug_profile

Conn = Connection[Any]

OPERATOR = Principal(key_id=0, role="operator")
SECRETS_FILE = "sim-device-secrets.json"


@dataclass
class Registration:
    """Where a fleet lives in the product: its customer, asset ids and device secrets."""

    customer_id: int
    asset_ids: dict[str, int]
    secrets: dict[str, str]


def secrets_path(data_dir: Path) -> Path:
    """The file that keeps simulated devices' secrets."""
    return data_dir.resolve() / SECRETS_FILE


def load_secrets(data_dir: Path) -> dict[str, str]:
    """Known device secrets (device ref -> secret); empty when there is no file yet."""
    path = secrets_path(data_dir)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Invalid(f"cannot read device secrets from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise Invalid(f"{path} is not a JSON object of device secrets")
    return {str(k): str(v) for k, v in data.items()}


def save_secrets(data_dir: Path, secrets: dict[str, str]) -> Path:
    """Write device secrets to the data folder, readable only by this user."""
    path = secrets_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = load_secrets(data_dir) | secrets
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(merged, fh, indent=2, sort_keys=True)
    return path


# retired through the API or the dashboard: the simulated fleet (``up``'s demo fleets too) keeps
# its customer and assets, so it cannot run on this database again
_NOT_AGAIN = (
    ": its fleet cannot be simulated again on this database (simulate another --customer; "
    "`fleetcare up` runs its demo fleets on a fresh database: FLEETCARE_DATABASE_URL)"
)


def register_fleet(
    conn: Conn,
    fleet: Fleet,
    known_secrets: dict[str, str],
    principal: Principal = OPERATOR,
) -> Registration:
    """Create (or find) the fleet's customer, sites, assets and devices; idempotent.

    New assets are installed when their oldest component's life began (once the fleet's
    clock is pinned, see ``Fleet.start``). A device that already exists is reused when its
    secret is known; otherwise the secret is lost (it is shown only once) and registration
    stops with a Conflict.
    """
    spec = fleet.spec
    customer = fleet_repo.find_customer_by_slug(conn, spec.customer)
    if customer is None:
        customer = fleet_service.create_customer(
            conn, principal, CustomerCreate(slug=spec.customer, name=spec.customer_name)
        )
    elif customer.retired_at is not None:
        raise Invalid(f"customer {spec.customer!r} is retired{_NOT_AGAIN}")
    site_ids: dict[str, int] = {}
    for site in fleet.sites:
        found = fleet_repo.find_site_by_ref(conn, customer.id, site.ref)
        if found is None:
            found = fleet_service.create_site(
                conn,
                principal,
                SiteCreate(
                    customer_id=customer.id, ref=site.ref, name=site.name, region=site.region
                ),
            )
        site_ids[site.ref] = found.id
    asset_ids: dict[str, int] = {}
    for asset in fleet.assets:
        existing = fleet_repo.find_asset_by_ref(conn, customer.id, asset.ref)
        if existing is None:
            existing = fleet_service.create_asset(
                conn,
                principal,
                AssetCreate(
                    customer_id=customer.id,
                    site_id=site_ids[asset.site],
                    kind=asset.kind,
                    ref=asset.ref,
                    installed_at=fleet.installed_at(asset.ref),
                    attributes=dict(asset.attributes),
                ),
            )
        elif existing.kind != asset.kind:
            raise Conflict(f"asset {asset.ref} exists as a {existing.kind}, not a {asset.kind}")
        elif existing.retired_at is not None:
            raise Invalid(f"asset {asset.ref} of {spec.customer!r} is retired{_NOT_AGAIN}")
        asset_ids[asset.ref] = existing.id
    registered = _customer_devices(conn, principal, customer.id)
    secrets: dict[str, str] = {}
    for device in fleet.devices:
        if device.ref in registered:
            if device.ref not in known_secrets:
                raise Conflict(
                    f"device {device.ref} is registered but its secret is not in the data "
                    "folder's secrets file; use another --customer"
                )
            secrets[device.ref] = known_secrets[device.ref]
            continue
        created = devices.create_device(
            conn, principal, DeviceCreate(customer_id=customer.id, ref=device.ref, name=device.name)
        )
        secrets[device.ref] = created.secret
    return Registration(customer.id, asset_ids, secrets)


def _customer_devices(conn: Conn, principal: Principal, customer_id: int) -> set[str]:
    refs: set[str] = set()
    after: int | None = None
    while True:
        page, after = devices.list_devices(
            conn, principal, customer_id=customer_id, after=after, limit=500, include_retired=True
        )
        refs.update(d.ref for d in page)
        if after is None:
            return refs


def recorded_lives(conn: Conn, asset_ids: dict[str, int]) -> int:
    """How many simulated lives these assets already have (history is written once)."""
    return repo.count_sim_lives(conn, list(asset_ids.values()))


def record_truth(conn: Conn, rows: Iterable[TruthRow], asset_ids: dict[str, int]) -> int:
    """Store ground-truth snapshots where evaluation (never features) reads them."""
    return repo.insert_truth(conn, rows, asset_ids)


def record_life_end(
    conn: Conn,
    life: LifeEnd,
    asset_ids: dict[str, int],
    source: str,
    *,
    failures: FailureReporter | None = None,
) -> None:
    """Record the end of a life: the hidden truth; the product's end-of-life record; and the
    exact remaining life of the life's ground-truth snapshots when it ended in failure.

    The product's record: none when a completed order already made it; with ``failures``
    (live fleets), a failure is queued for the reporter, who tells the product through its
    API as a customer would (the product ends the life, counts a missed prediction, may raise
    an urgent order; the caller flushes the reporter after its transaction); otherwise
    (history) the life is written as a past record with source ``simulator-<source>``."""
    asset_id = asset_ids[life.asset_ref]
    if not repo.insert_sim_life(conn, life, asset_id, source):
        return
    if life.by_order:
        pass  # the completed order made the product's record
    elif life.end_reason == "failure" and failures is not None:
        failures.report(asset_id, life)
    else:
        repo.insert_asset_life(conn, life, asset_id, f"simulator-{source}")
    if life.end_reason == "failure":
        length = life.usage_at_end - life.usage_at_start
        repo.fill_actual_rul(conn, asset_id, life.component, life.started_at, length)


def apply_sparkplug_profile(
    conn: Conn, fleet: Fleet, setup: SparkplugSetup, principal: Principal = OPERATOR
) -> None:
    """Apply the ``sparkplug_b`` profile that maps the fleet's edge nodes (idempotent)."""
    profile_service.apply_profile(
        conn, principal, sparkplug_profile(fleet, setup), source="fleetcare simulate --sparkplug"
    )
