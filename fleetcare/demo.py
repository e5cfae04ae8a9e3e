"""Demo data for `fleetcare up`: an operator key and two customers with sites and assets."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fleetcare.db import connect
from fleetcare.fleet import repository as fleet_repo
from fleetcare.fleet import service as fleet
from fleetcare.fleet.schemas import Principal

DEMO_CUSTOMERS = (
    ("acme-logistics", "ACME Logistics", (("DEPOT-N", "North depot", "north"),)),
    ("skyline-buildings", "Skyline Buildings", (("TOWER-1", "Skyline Tower", "central"),)),
)


def seed_demo(database_url: str, data_dir: Path) -> Path:
    """Create the demo operator and customers when missing; return the keys file.

    Keys are stored hashed in the database, so the whole keys are written once to a file
    readable only by this user; when that file's keys still work, they are reused.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    keys_file = data_dir / "demo-keys.json"
    keys: dict[str, str] = {}
    if keys_file.exists():
        keys = json.loads(keys_file.read_text())
    operator = Principal(key_id=0, role="operator")
    with connect(database_url) as conn:
        with conn.transaction():
            valid = {}
            for name, key in keys.items():
                try:
                    fleet.authenticate(conn, key)
                    valid[name] = key
                except Exception:
                    continue
            keys = valid
            if "operator" not in keys:
                keys["operator"] = fleet.issue_api_key(
                    conn, role="operator", customer_id=None, name="demo operator"
                ).key
        for slug, name, sites in DEMO_CUSTOMERS:
            with conn.transaction():
                customer = fleet.ensure_customer(conn, slug, name)
                for ref, site_name, region in sites:
                    if fleet_repo.find_site_by_ref(conn, customer.id, ref) is None:
                        from fleetcare.fleet.schemas import SiteCreate

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
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(keys, fh, indent=2)
    return keys_file
