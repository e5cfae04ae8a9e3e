"""The audit trail's retention: ``fleetcare audit purge`` deletes the records older than the
retention, through the owner-only path of migration 0111, and records each purge in the
trail; the application role still cannot delete a record, nor call the purge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import Connection
from typer.testing import CliRunner

from cli.main import app
from fleetcare.db import connect
from fleetcare.tenancy import system_session
from tests.conftest import Tenant

runner = CliRunner()


def _record(conn: Connection[Any], customer_id: int | None, days_ago: float) -> None:
    conn.execute(
        "INSERT INTO audit_log (at, customer_id, actor, source, channel, resource, resource_id,"
        " action, after) VALUES (now() - make_interval(secs => %s), %s, 'key:1', 'test', 'api',"
        " 'assets', '1', 'insert', '{\"ref\": \"A\"}')",
        (days_ago * 86400, customer_id),
    )


def _purges(conn: Connection[Any]) -> dict[int | None, int]:
    rows = conn.execute(
        "SELECT customer_id, sum((before->>'rows')::int) FROM audit_log"
        " WHERE resource = 'audit_log' AND action = 'delete' GROUP BY customer_id"
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def test_the_retention_job_purges_expired_records_and_records_the_purge(
    db_url: str,
    conn: Connection[Any],
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    acme, beta = make_tenant(), make_tenant()
    for customer_id, count in ((acme.customer.id, 3), (beta.customer.id, 2), (None, 1)):
        for _ in range(count):
            _record(conn, customer_id, days_ago=400)
    _record(conn, acme.customer.id, days_ago=10)
    conn.commit()
    before = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    assert before is not None
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))

    unset = runner.invoke(app, ["audit", "purge"])
    assert unset.exit_code == 2 and "no retention" in unset.output
    result = runner.invoke(app, ["audit", "purge", "--retention-days", "365", "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert "purged 6 audit record(s) older than 365 day(s)" in result.output
    conn.rollback()
    old = conn.execute(
        "SELECT count(*) FROM audit_log WHERE at < now() - interval '365 days'"
    ).fetchone()
    assert old == (0,)
    recent = conn.execute(
        "SELECT count(*) FROM audit_log WHERE at BETWEEN now() - interval '11 days'"
        " AND now() - interval '9 days'"
    ).fetchone()
    assert recent == (1,)
    # the purge is in the trail: per customer, by the command line's user
    assert _purges(conn) == {acme.customer.id: 3, beta.customer.id: 2, None: 1}
    actors = conn.execute(
        "SELECT DISTINCT actor, channel FROM audit_log WHERE resource = 'audit_log'"
    ).fetchall()
    assert len(actors) == 1 and actors[0][0].startswith("cli:") and actors[0][1] == "cli"
    # a customer's admin sees its own organisation's purge, not another's
    trail = client.get("/v1/audit?resource=audit_log", headers=acme.headers)
    assert trail.status_code == 200, trail.text
    items = trail.json()["items"]
    assert items and {i["customer_id"] for i in items} == {acme.customer.id}
    assert sum(i["before"]["rows"] for i in items) == 3

    # from the settings; nothing left to purge: nothing recorded
    monkeypatch.setenv("FLEETCARE_AUDIT_RETENTION_DAYS", "365")
    again = runner.invoke(app, ["audit", "purge"])
    assert again.exit_code == 0 and "purged 0" in again.output
    conn.rollback()
    assert _purges(conn) == {acme.customer.id: 3, beta.customer.id: 2, None: 1}
    too_short = runner.invoke(app, ["audit", "purge", "--retention-days", "0.5"])
    assert too_short.exit_code == 2


def test_the_trail_stays_append_only_for_the_app_role(db_url: str) -> None:
    with connect(db_url) as owner:
        _record(owner, None, days_ago=400)
        _record(owner, None, days_ago=0)
        owner.commit()
    # the application role: no purge, no delete, even with the purge's flag set by hand
    with connect(db_url, actor="system:test") as app_conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app_conn.execute("SELECT fleetcare_audit_purge(now() - interval '300 days', 10)")
        app_conn.rollback()
        app_conn.execute("SELECT set_config('fleetcare.audit_purge', 'on', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app_conn.execute("DELETE FROM audit_log WHERE at < now() - interval '300 days'")
        app_conn.rollback()
    with connect(db_url) as owner:
        # the owner too, outside the purge function
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            owner.execute("DELETE FROM audit_log WHERE at < now() - interval '300 days'")
        owner.rollback()
        # the flag by hand does not reach a young record, nor allow an update
        owner.execute("SELECT set_config('fleetcare.audit_purge', 'on', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            owner.execute("DELETE FROM audit_log WHERE at > now() - interval '1 hour'")
        owner.rollback()
        owner.execute("SELECT set_config('fleetcare.audit_purge', 'on', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            owner.execute("UPDATE audit_log SET actor = 'x'")
        owner.rollback()
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            owner.execute("SELECT fleetcare_audit_purge(now() - interval '1 hour', 10)")
        owner.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            owner.execute("TRUNCATE audit_log")
        owner.rollback()
        count = owner.execute("SELECT count(*) FROM audit_log").fetchone()
        assert count is not None and count[0] >= 2
        # the owner's purge function: the old record only
        purged = owner.execute(
            "SELECT fleetcare_audit_purge(now() - interval '300 days', 10)"
        ).fetchone()
        assert purged == (1,)
        owner.commit()
    with connect(db_url) as app_conn:
        system_session(app_conn, "system:test")
        left = app_conn.execute(
            "SELECT count(*) FROM audit_log WHERE at < now() - interval '300 days'"
        ).fetchone()
        assert left == (0,)


@pytest.mark.parametrize("days", ["99999999999", "3000000", "inf"])
def test_a_retention_longer_than_a_century_is_refused_not_a_traceback(
    days: str, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A retention past what a date holds (the cutoff would be before year 1) is the option's
    or the setting's fault, said as such; it raised OverflowError with a traceback."""
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    option = runner.invoke(app, ["audit", "purge", "--retention-days", days])
    assert option.exit_code == 2, option.output
    assert "--retention-days" in option.output and "36525" in option.output, option.output
    monkeypatch.setenv("FLEETCARE_AUDIT_RETENTION_DAYS", days)
    setting = runner.invoke(app, ["audit", "purge"])
    assert setting.exit_code == 2, setting.output
    assert "bad configuration" in setting.output and "audit_retention_days" in setting.output
