"""Schemathesis over the whole OpenAPI, as a customer and as the operator, on a seeded database.

Bounded: a fixed number of generated examples per operation (``FUZZ_EXAMPLES``), derandomized
so that a run is repeatable. Fails on any 5xx and on any answer that its operation does not
document (status code, content type, body schema).

Each generated request is sent once per role: generating is most of the cost (Hypothesis built
the same derandomized examples for a test per role before), and every role's answer is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fleet import service as fleet
from fleetcare.db import connect
from fleetcare.settings import Settings
from tests.conftest import Tenant
from tests.fixtures.api import setup_customer, stock
from tests.fixtures.services import fresh_database

FUZZ_EXAMPLES = 6


@pytest.fixture(scope="module")
def seeded(
    server_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """An app over its own database with an operator, a customer, a site, an asset, stock."""
    from api.app import create_app

    with fresh_database(server_url, template=template_db) as url:
        app_settings = Settings(
            database_url=url,
            data_dir=tmp_path_factory.mktemp("fuzz"),
            demo=False,
            webhooks_allow_private=False,
            auth_failure_limit=1_000_000,
            auth_failure_address_limit=10_000_000,
        )
        app = create_app(app_settings, url)
        with connect(url) as c:
            operator_key = fleet.issue_api_key(c, role="operator", customer_id=None).key
            customer = fleet.ensure_customer(c, "fuzz", "Fuzz")
            customer_key = fleet.issue_api_key(c, role="customer", customer_id=customer.id).key
        operator = {"Authorization": f"Bearer {operator_key}"}
        with TestClient(app) as client:  # the lifespan opens the pool for the whole module
            stock(client, operator)
            setup_customer(client, Tenant(customer, customer_key))
            yield {
                "app": app,
                "headers": {
                    "operator": operator,
                    "customer": {"Authorization": f"Bearer {customer_key}"},
                },
            }


FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def sending_as(roles: dict[str, dict[str, str]], failed: dict[str, str]) -> Callable[[Any], None]:
    """A test body that sends a generated request as every role and checks each answer,
    noting each role's first failure in ``failed``."""

    def send(case: Any) -> None:
        for role, headers in roles.items():
            if role in failed:
                continue
            try:
                response = case.call(headers=headers)
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # one line per role
                failed[role] = " | ".join(str(exc).strip().splitlines()[:6])

    return send


def fuzz(app: Any, roles: dict[str, dict[str, str]]) -> list[str]:
    """Every operation, valid and invalid generated input, each request sent as every role;
    what failed, one line per operation, mode and role (its first failing example)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"schema: {result.err()}")
            continue
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failed: dict[str, str] = {}  # role -> its first failure
            run = FUZZ_SETTINGS(
                given(case=operation.as_strategy(generation_mode=mode))(sending_as(roles, failed))
            )
            try:
                run()
            except Unsatisfiable:  # no input to make invalid (e.g. GET /healthz, negative)
                continue
            except (Exception, BaseExceptionGroup) as exc:  # generating itself failed
                first = str(exc).strip().splitlines()[:6]
                failures.append(f"{operation.label} [{mode.value}]: {' | '.join(first)}")
            failures += [
                f"{operation.label} [{mode.value}] as {role}: {line}"
                for role, line in failed.items()
            ]
    return failures


@pytest.mark.timeout(900)  # ~2,000 requests, each as both roles: minutes on a busy machine
def test_no_operation_answers_5xx_or_off_its_schema(seeded: dict[str, Any]) -> None:
    failures = fuzz(seeded["app"], seeded["headers"])
    assert not failures, "\n".join(failures)
