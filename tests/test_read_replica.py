"""The dashboard and read-only API routes read from a real streaming replica
(FLEETCARE_READ_DATABASE_URL); writes stay on the primary; a replica that lags answers 503."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from fleet import service as fleet
from fleetcare.db import connect
from fleetcare.repository import replica_lag_s
from fleetcare.settings import Settings
from testkit.databases import database_url
from tests.fixtures.replica import streaming_pair
from tests.fixtures.services import migrated_database

TIMEOUT = 60.0


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def refs(client: TestClient, headers: dict[str, str]) -> set[str] | None:
    """The asset refs the API reads; None while it answers that the replica is catching up."""
    response = client.get("/v1/assets", headers=headers)
    if response.status_code == 503 and response.json().get("code") == "replica_lagging":
        return None  # after a replay resumes the lag takes a moment to fall under the limit
    assert response.status_code == 200, response.text
    return {a["ref"] for a in response.json()["items"]}


def test_reads_on_the_replica_writes_on_the_primary_and_a_lagging_replica_refused(
    tmp_path: Path,
) -> None:
    with streaming_pair() as pair:
        primary_db = migrated_database(pair.primary_url, "fc_repl")
        replica_db = database_url(pair.replica_url, "fc_repl")
        with connect(primary_db) as c:
            customer = fleet.ensure_customer(c, "replica-co", "Replica Co")
            key = fleet.issue_api_key(c, role="customer", customer_id=customer.id).key
            c.commit()
        headers = {"Authorization": f"Bearer {key}"}
        settings = Settings(
            database_url=primary_db,
            read_database_url=replica_db,
            read_max_lag_s=300,
            data_dir=tmp_path,
            demo=False,
        )
        with psycopg.connect(replica_db, autocommit=True) as standby:
            assert wait_until(
                lambda: standby.execute("SELECT count(*) FROM customers").fetchone() == (1,)
            )
            with TestClient(create_app(settings, primary_db)) as client:
                # replay stopped: the replica keeps receiving WAL but shows nothing new
                standby.execute("SELECT pg_wal_replay_pause()")
                made = client.post(
                    "/v1/assets", headers=headers, json={"kind": "tire", "ref": "R-1"}
                )
                assert made.status_code == 201, made.text  # the write went to the primary
                assert refs(client, headers) == set()  # the read came from the replica
                with connect(primary_db) as c:
                    on_primary = c.execute("SELECT ref FROM assets").fetchall()
                assert on_primary == [("R-1",)]
                for page in ("/dashboard/orders", "/dashboard/shipments", "/dashboard/billing"):
                    assert client.get(page, headers=headers).status_code == 200, page
                standby.execute("SELECT pg_wal_replay_resume()")
                assert wait_until(lambda: refs(client, headers) == {"R-1"})

            strict = settings.model_copy(update={"read_max_lag_s": 0.5})
            with TestClient(create_app(strict, primary_db)) as client:
                # WAL without a transaction (checkpoints) counts as lag while it is replayed
                # (see replica_lag_s): wait for a quiet moment
                assert wait_until(
                    lambda: client.get("/v1/assets", headers=headers).status_code == 200
                )
                assert refs(client, headers) == {"R-1"}
                standby.execute("SELECT pg_wal_replay_pause()")
                made = client.post(
                    "/v1/assets", headers=headers, json={"kind": "tire", "ref": "R-2"}
                )
                assert made.status_code == 201, made.text
                assert wait_until(lambda: (replica_lag_s(standby) or 0.0) > 0.5)
                lagging = client.get("/v1/assets", headers=headers)
                assert lagging.status_code == 503
                body: dict[str, Any] = lagging.json()
                assert body["code"] == "replica_lagging" and "behind" in body["detail"]
                assert lagging.headers["retry-after"] == "1"
                page = client.get("/dashboard/orders", headers=headers)
                assert page.status_code == 503
                # writes never wait for the replica
                assert (
                    client.post(
                        "/v1/assets", headers=headers, json={"kind": "tire", "ref": "R-3"}
                    ).status_code
                    == 201
                )
                standby.execute("SELECT pg_wal_replay_resume()")
                assert wait_until(lambda: refs(client, headers) == {"R-1", "R-2", "R-3"})
            with connect(primary_db) as c:
                assert replica_lag_s(c) is None  # the primary is no replica
