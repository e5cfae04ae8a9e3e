"""Shared fixtures: a fresh database per test (cloned from a migrated template), the API,
customers with keys, and an MQTT broker with a per-test topic root."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from fleet import service as fleet
from fleet.schemas import Customer, Principal
from fleetcare.db import connect
from fleetcare.migrate import Storage
from fleetcare.services import port_answers, start_mosquitto
from fleetcare.settings import Settings
from testkit.databases import seal_template
from tests.fixtures.events import check_back_office_events
from tests.fixtures.people import TEST_PASSWORD_ENV
from tests.fixtures.services import (
    STORAGES,
    drop_database,
    fresh_database,
    migrated_database,
    storage_server,
    unique_name,
)

# Every Settings the tests build, and every command they start, hashes passwords at the
# suite's low cost (tests.fixtures.people.TEST_PASSWORD_COST), unless the caller set its own.
for _name, _value in TEST_PASSWORD_ENV.items():
    os.environ.setdefault(_name, _value)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist, each storage path's tests run on one worker, in order."""
    from tests.fixtures.xdist_storage import make_scheduler

    return make_scheduler(config, log)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: a storage-independent test of a minute or more, collected first so that xdist"
        " hands it out early (tests/fixtures/xdist_storage.py)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Storage-independent `slow` tests first, the rest in their order: under xdist the
    heaviest modules are then handed out first, and the last ones are short."""
    from tests.fixtures.xdist_storage import storage_of

    items.sort(
        key=lambda item: not (item.get_closest_marker("slow") and not storage_of(item.nodeid))
    )


@pytest.fixture(scope="session", params=STORAGES)
def storage(request: pytest.FixtureRequest) -> Storage:
    """The storage path under test: every test that uses a database runs on both."""
    return cast(Storage, request.param)


@pytest.fixture(scope="session")
def server_url(storage: Storage) -> str:
    """The PostgreSQL server of this storage path (skipped or failed when absent)."""
    return storage_server(storage)


@pytest.fixture(scope="session")
def template_db(server_url: str, storage: Storage) -> Iterator[str]:
    """A database migrated once per session and storage path; each test gets a copy."""
    name = unique_name("fc_tpl")
    migrated_database(server_url, name, storage=storage)
    seal_template(server_url, name)
    yield name
    drop_database(server_url, name)


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, fully migrated database for this test only."""
    with fresh_database(server_url, template=template_db) as url:
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[Connection[Any]]:
    """A connection to the test's database (not autocommit: commit explicitly)."""
    with connect(db_url) as c:
        yield c


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings pointing at the test database and a temporary data folder."""
    return Settings(
        database_url=db_url,
        data_dir=tmp_path / "data",
        demo=False,
        webhooks_allow_private=True,
        # tests send many bad keys on purpose; the limit has its own test
        auth_failure_limit=100_000,
        auth_failure_address_limit=1_000_000,
    )


@pytest.fixture
def client(settings: Settings, db_url: str) -> Iterator[TestClient]:
    """The real app over the test database."""
    from api.app import create_app

    with TestClient(create_app(settings, db_url)) as c:
        yield c


OPERATOR = Principal(key_id=0, role="operator")


@dataclass
class Tenant:
    """A customer and a key of its own."""

    customer: Customer
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def operator_headers(db_url: str) -> dict[str, str]:
    """Headers with a fresh operator key."""
    with connect(db_url) as c:
        key = fleet.issue_api_key(c, role="operator", customer_id=None).key
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def make_tenant(db_url: str) -> Callable[..., Tenant]:
    """Factory: ``make_tenant("acme")`` creates a customer and a customer key."""

    def make(slug: str | None = None, role: str = "customer") -> Tenant:
        slug = slug or f"c-{uuid.uuid4().hex[:8]}"
        with connect(db_url) as c:
            customer = fleet.ensure_customer(c, slug, slug.title())
            key = fleet.issue_api_key(c, role=role, customer_id=customer.id).key
        return Tenant(customer, key)

    return make


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker: FLEETCARE_TEST_MQTT_URL, else our own no-drop Mosquitto, else 1883."""
    configured = os.environ.get("FLEETCARE_TEST_MQTT_URL")
    if configured:
        yield configured
        return
    try:
        broker, url = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    except (OSError, RuntimeError, TimeoutError):
        if not port_answers("127.0.0.1", 1883):
            pytest.skip("no MQTT broker available")
        yield "mqtt://127.0.0.1:1883"
        return
    try:
        yield url
    finally:
        broker.stop()


@pytest.fixture
def topic_root() -> str:
    """A topic root of this test's own, so that tests never see each other's messages."""
    return f"test/{uuid.uuid4().hex[:10]}/fleetcare/v1"


@pytest.fixture
def events_match_catalogue(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the test: every back-office event it emitted matches its catalogue entry
    (``tests.fixtures.events.check_back_office_events``)."""
    # the database is requested first, so that it is torn down after this check
    url = request.getfixturevalue("db_url") if "db_url" in request.fixturenames else None
    yield
    if url is not None:
        with connect(url) as c:
            check_back_office_events(c)
