"""Fixtures of the webhook test modules: one database per module, a local receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import Connection
from psycopg_pool import ConnectionPool

from fleetcare.db import connect, open_pool
from tests.fixtures.services import fresh_database
from tests.fixtures.webhook_receiver import Receiver


@pytest.fixture(scope="module")
def module_db_url(server_url: str, template_db: str) -> Iterator[str]:
    """One database for the module's tests (creating one per test dominates the runtime)."""
    with fresh_database(server_url, template=template_db) as url:
        yield url


@pytest.fixture
def db_url(module_db_url: str) -> Iterator[str]:
    """The module's database; each test makes customers of its own, and when it ends its
    endpoints are disabled, so that nothing it left pending is sent during a later test."""
    yield module_db_url
    with connect(module_db_url) as c:
        c.execute("UPDATE webhook_endpoints SET enabled = false, locked_until = NULL")
        c.commit()


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool[Connection[Any]]]:
    """A pool on the test's database, as a sender process has."""
    p = open_pool(db_url, name="webhooks-test")
    yield p
    p.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on a free loopback port."""
    r = Receiver().start()
    yield r
    r.stop()
