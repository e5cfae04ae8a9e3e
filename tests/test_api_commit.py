"""The request's transaction commits before the response is sent, and a failed commit is an
error response (issue 24, point 6)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from fastapi.routing import APIRoute
from psycopg import Connection

from api.app import create_app
from api.deps import get_conn
from fleetcare.db import connect
from fleetcare.settings import Settings
from tests.fixtures.dashboard import serve_app

ROUNDS = 150


def test_a_created_row_is_visible_to_the_next_request_and_to_another_connection(
    settings: Settings, db_url: str, operator_headers: dict[str, str]
) -> None:
    # Over real HTTP (uvicorn): the client gets the answer as soon as it is sent, so a commit
    # that ran after the response would show as a 404 on the very next request.
    with (
        serve_app(settings, db_url) as server,
        httpx.Client(base_url=server.url, headers=operator_headers, timeout=30) as http,
        connect(db_url, autocommit=True) as other,
    ):
        for i in range(ROUNDS):
            slug = f"raw-{i}-{uuid.uuid4().hex[:6]}"
            created = http.post("/v1/customers", json={"slug": slug, "name": slug})
            assert created.status_code == 201, created.text
            customer_id = created.json()["id"]
            row = other.execute("SELECT slug FROM customers WHERE id = %s", (customer_id,))
            assert row.fetchone() == (slug,), f"round {i}: customer not visible on another conn"
            site = http.post(
                "/v1/sites", json={"customer_id": customer_id, "ref": f"S-{i}", "name": "Site"}
            )
            assert site.status_code == 201, f"round {i}: {site.status_code} {site.text}"


def _fail_commit_for(conn: Connection[Any], slug: str) -> None:
    """A constraint checked only at commit, refusing one customer slug."""
    conn.execute(
        f"""
        CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.slug = '{slug}' THEN
                RAISE EXCEPTION 'customer % refused at commit', NEW.slug
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON customers
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();
        """
    )
    conn.commit()


def test_a_commit_that_fails_is_an_error_response_not_a_success(
    settings: Settings, db_url: str, conn: Connection[Any], operator_headers: dict[str, str]
) -> None:
    _fail_commit_for(conn, "refused-at-commit")
    with (
        serve_app(settings, db_url) as server,
        httpx.Client(base_url=server.url, headers=operator_headers, timeout=30) as http,
    ):
        refused = http.post("/v1/customers", json={"slug": "refused-at-commit", "name": "X"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "conflict"
        assert "refused at commit" in refused.json()["detail"]
        # nothing was stored, and the pooled connection is fine for the next request
        listed = http.get("/v1/customers", params={"limit": 500}).json()["items"]
        assert "refused-at-commit" not in [c["slug"] for c in listed]
        fine = http.post("/v1/customers", json={"slug": "accepted-at-commit", "name": "Y"})
        assert fine.status_code == 201, fine.text


def _api_routes(routes: Sequence[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.13x wraps includes
        if inner is not None:
            yield from _api_routes(inner.routes)


def test_every_route_commits_before_answering(settings: Settings, db_url: str) -> None:
    """Each route (API and dashboard) that takes the request connection takes it
    function-scoped, so that its commit runs before the response is sent."""
    app = create_app(settings, db_url)
    checked = 0
    for route in _api_routes(app.routes):
        stack = list(route.dependant.dependencies)
        while stack:
            dep = stack.pop()
            if dep.call is get_conn:
                assert dep.scope == "function", f"{route.path}: get_conn is not function-scoped"
                checked += 1
            stack.extend(dep.dependencies)
    assert checked > 100
