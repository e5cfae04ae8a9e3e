"""SaaS metrics on a scripted year of seven customers: renewals, an upgrade, a pause, a
non-renewal, an immediate churn, a trial that converts and a late payment. Every figure is
computed by hand in the comments (and in docs/billing.md) and must match exactly; the
identity closing = opening + new + expansion - contraction - churned holds every month, by
plan and by kind; the CLI and the API give the same figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection
from typer.testing import CliRunner

from cli.main import app
from fleet.schemas import Principal
from fleetcare.clock import ManualClock
from fleetcare.errors import Forbidden, Invalid
from maintenance.billing import service as billing
from maintenance.dunning import service as dunning
from maintenance.metrics.schemas import MonthMetrics
from maintenance.metrics.service import metrics_series
from maintenance.subscriptions import contracts
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import AssetList
from tests.conftest import Tenant
from tests.fixtures.billing import OPERATOR, change_plan, move, subscribed_customer

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")

NOW = ManualClock(datetime(2027, 1, 5, tzinfo=UTC))


def d(month: int, day: int = 1, year: int = 2026, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def _advance(conn: Connection[Any], when: datetime) -> None:
    contracts.advance_lifecycles(conn, ManualClock(when))
    conn.commit()


def _script(conn: Connection[Any]) -> dict[str, int]:
    """The year. Proactive costs 2900 per asset-month, Monitor 900; both pause for free."""
    a = subscribed_customer(conn, "acme", plan="proactive", starts_at=d(7, year=2025), assets=2)
    d_ = subscribed_customer(conn, "delta", plan="proactive", starts_at=d(9, year=2025), assets=3)
    c = subscribed_customer(conn, "cargo", plan="proactive", starts_at=d(10, year=2025))
    b = subscribed_customer(conn, "bolt", plan="monitor", starts_at=d(1))
    e = subscribed_customer(conn, "echo", plan="proactive", starts_at=d(2))
    _advance(conn, d(2, 15))
    # echo's February invoice is issued on 3 March, due 2 April, and paid late on 10 May
    issued = billing.close_period(
        conn, "2026-02", ManualClock(d(3, 3)), customer_id=e.customer_id, issue=True
    )
    conn.commit()
    [invoice] = issued.invoices
    f = subscribed_customer(conn, "fox", plan="proactive", starts_at=d(3))
    change_plan(conn, b.subscription_id, "proactive", d(4))  # bolt upgrades on 1 April
    dunning.run_dunning(conn, ManualClock(d(4, 17, hour=1)))  # 15 days late: past due
    conn.commit()
    move(conn, c.subscription_id, "paused", d(5))  # cargo pauses 1 May ...
    dunning.pay_in_full(conn, OPERATOR, invoice.id, ManualClock(d(5, 10)))
    conn.commit()
    # delta gives notice on 1 June: no renewal on 1 September
    subscriptions.cancel(conn, OPERATOR, d_.subscription_id, True, ManualClock(d(6)))
    conn.commit()
    g = subscribed_customer(conn, "gamma", plan="proactive", starts_at=d(6), trial_days=30)
    _advance(conn, d(6, 2))
    move(conn, c.subscription_id, "active", d(7))  # ... and resumes 1 July
    _advance(conn, d(7, 1, hour=1))  # acme renews, gamma's trial converts (1 July)
    _advance(conn, d(9, 1, hour=1))  # delta ends
    _advance(conn, d(10, 1, hour=1))  # cargo renews
    move(conn, f.subscription_id, "cancelled", d(10, 15))  # fox leaves now
    _advance(conn, d(12, 31))
    return {
        "acme": a.customer_id,
        "bolt": b.customer_id,
        "cargo": c.customer_id,
        "delta": d_.customer_id,
        "echo": e.customer_id,
        "fox": f.customer_id,
        "gamma": g.customer_id,
        "echo_sub": e.subscription_id,
        "cargo_sub": c.subscription_id,
    }


# month: opening, new, expansion, contraction, churned, closing, customers open -> close,
# churned logos, GRR, NRR, renewals (renewed/due). By hand:
#  opening January: acme 2 x 2900 + delta 3 x 2900 + cargo 2900 = 17400 (3 customers)
#  Jan bolt new 900 · Feb echo new 2900 · Mar fox new 2900 · Apr bolt Monitor -> Proactive
#  +2000 · May cargo paused (free): -2900, still a customer · Jun gamma trialing (not yet a
#  customer, no MRR) · Jul acme renews (1/1), cargo resumes +2900 (expansion), gamma converts
#  +2900 (new) · Sep delta does not renew: churned 8700 (0/1) · Oct cargo renews (1/1), fox
#  cancels: churned 2900.
EXPECTED = {
    "2026-01": (17400, 900, 0, 0, 0, 18300, 3, 4, 0, "1.0000", "1.0000", (0, 0)),
    "2026-02": (18300, 2900, 0, 0, 0, 21200, 4, 5, 0, "1.0000", "1.0000", (0, 0)),
    "2026-03": (21200, 2900, 0, 0, 0, 24100, 5, 6, 0, "1.0000", "1.0000", (0, 0)),
    # NRR 26100 / 24100
    "2026-04": (24100, 0, 2000, 0, 0, 26100, 6, 6, 0, "1.0000", "1.0830", (0, 0)),
    # GRR = NRR = 23200 / 26100
    "2026-05": (26100, 0, 0, 2900, 0, 23200, 6, 6, 0, "0.8889", "0.8889", (0, 0)),
    "2026-06": (23200, 0, 0, 0, 0, 23200, 6, 6, 0, "1.0000", "1.0000", (0, 0)),
    "2026-07": (23200, 2900, 2900, 0, 0, 29000, 6, 7, 0, "1.0000", "1.0000", (1, 1)),
    "2026-08": (29000, 0, 0, 0, 0, 29000, 7, 7, 0, "1.0000", "1.0000", (0, 0)),
    # 20300 / 29000
    "2026-09": (29000, 0, 0, 0, 8700, 20300, 7, 6, 1, "0.7000", "0.7000", (0, 1)),
    # 17400 / 20300
    "2026-10": (20300, 0, 0, 0, 2900, 17400, 6, 5, 1, "0.8571", "0.8571", (1, 1)),
    "2026-11": (17400, 0, 0, 0, 0, 17400, 5, 5, 0, "1.0000", "1.0000", (0, 0)),
    "2026-12": (17400, 0, 0, 0, 0, 17400, 5, 5, 0, "1.0000", "1.0000", (0, 0)),
}


def _figures(m: MonthMetrics) -> tuple[Any, ...]:
    return (
        m.opening_mrr_minor,
        m.new_mrr_minor,
        m.expansion_mrr_minor,
        m.contraction_mrr_minor,
        m.churned_mrr_minor,
        m.closing_mrr_minor,
        m.customers_opening,
        m.customers_closing,
        m.churned_customers,
        m.gross_revenue_retention,
        m.net_revenue_retention,
        (m.renewals, m.renewals_due),
    )


def _identity(m: Any) -> None:
    assert m.closing_mrr_minor == (
        m.opening_mrr_minor
        + m.new_mrr_minor
        + m.expansion_mrr_minor
        - m.contraction_mrr_minor
        - m.churned_mrr_minor
    ), m


def test_a_scripted_year_reconciles_with_hand_computed_figures(
    conn: Connection[Any],
    client: TestClient,
    operator_headers: dict[str, str],
    make_tenant: Any,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ids = _script(conn)
    series = metrics_series(conn, OPERATOR, "2026-12", NOW, months=12)
    got = {m.month: _figures(m) for m in series.months}
    assert got == EXPECTED
    for m in series.months:
        _identity(m)
        for groups in (m.by_plan, m.by_kind):
            for g in groups:
                _identity(g)
            assert sum(g.closing_mrr_minor for g in groups) == m.closing_mrr_minor
            assert sum(g.opening_mrr_minor for g in groups) == m.opening_mrr_minor
    by_month = {m.month: m for m in series.months}
    # by plan, bolt's upgrade is Monitor churned and Proactive new
    april = {g.key: g for g in by_month["2026-04"].by_plan}
    assert (april["monitor"].churned_mrr_minor, april["proactive"].new_mrr_minor) == (900, 2900)
    assert [(g.key, g.closing_mrr_minor) for g in by_month["2026-12"].by_kind] == [("tire", 17400)]
    assert by_month["2026-12"].arr_minor == 17400 * 12
    assert by_month["2026-09"].logo_churn_rate == "0.1429"  # 1 of 7
    assert by_month["2026-10"].renewal_rate == "1.0000"
    assert by_month["2026-09"].renewal_rate == "0.0000"

    # the late payment: past due from 17 April to 10 May, never out of MRR
    history = subscriptions.status_history(conn, ids["echo_sub"])
    assert [(h.status, h.valid_from) for h in history] == [
        ("active", d(2)),
        ("past_due", d(4, 17, hour=1)),
        ("active", d(5, 10)),
    ]
    # the pause is billed by the plan's rule (free): no invoice in May and June, 2900 in July
    for month, total in (("2026-05", None), ("2026-06", None), ("2026-07", 2900)):
        year, mo = (int(x) for x in month.split("-"))
        closed = billing.close_period(
            conn, month, ManualClock(d(mo + 1, 2, year=year)), customer_id=ids["cargo"]
        )
        conn.commit()
        assert [i.total_minor for i in closed.invoices] == ([total] if total else [])

    # the API gives the same figures to the operator and refuses customers
    response = client.get(
        "/v1/billing/metrics", params={"month": "2026-12", "months": 12}, headers=operator_headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == json.loads(series.model_dump_json())
    customer: Tenant = make_tenant("metrics-peek")
    denied = client.get(
        "/v1/billing/metrics", params={"month": "2026-12"}, headers=customer.headers
    )
    assert denied.status_code == 403
    for params in ({"month": "2026-13"}, {"month": "2026-12", "months": 0}, {"month": "x"},
                   {"month": "2026-12", "currency": "eur"}, {"month": "2099-01"}):  # fmt: skip
        bad = client.get("/v1/billing/metrics", params=params, headers=operator_headers)
        assert bad.status_code == 422, (params, bad.text)
        assert bad.headers["content-type"].startswith("application/problem+json")

    # the operator's dashboard page draws the same series (uPlot, from the embedded JSON)
    from tests.test_dashboard import sign_in

    assert sign_in(client, customer.key).status_code == 303
    assert client.get("/dashboard/metrics").status_code == 403  # the operator's page only
    assert "/dashboard/metrics" not in client.get("/dashboard/billing").text
    assert sign_in(client, operator_headers["Authorization"].split()[-1]).status_code == 303
    page = client.get("/dashboard/metrics", params={"month": "2026-12", "months": 12})
    assert page.status_code == 200, page.text
    assert '<script src="/static/metrics.js"' in page.text
    assert 'id="metrics-charts"' in page.text and 'id="metrics-data"' in page.text
    assert '<tr data-month="2026-09">' in page.text and "0.7000" in page.text
    embedded = page.text.split('id="metrics-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded) == json.loads(series.model_dump_json())
    assert client.get("/static/metrics.js").status_code == 200
    bad_page = client.get("/dashboard/metrics", params={"month": "2099-01"})
    assert bad_page.status_code == 422 and "has not started" in bad_page.text

    # the CLI too
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    out = runner.invoke(app, ["billing", "metrics", "--month", "2026-09", "--json"])
    assert out.exit_code == 0, out.output
    [september] = json.loads(out.stdout)["months"]
    assert september == json.loads(by_month["2026-09"].model_dump_json())
    table = runner.invoke(app, ["billing", "metrics", "--month", "2026-12", "--months", "12"])
    assert table.exit_code == 0 and "290.00" in table.output and "0.7000" in table.output
    for args in (
        ["--month", "2026-13"],
        ["--month", "2099-01"],
        ["--month", "2026-01", "--months", "99"],
    ):
        bad = runner.invoke(app, ["billing", "metrics", *args])
        assert bad.exit_code == 2 and "Traceback" not in bad.output, bad.output


def test_metrics_refuse_bad_input_and_non_operators(conn: Connection[Any]) -> None:
    customer = Principal(key_id=1, role="customer", customer_id=1)
    with pytest.raises(Forbidden):
        metrics_series(conn, customer, "2026-11", NOW)
    for month, months, currency in (
        ("2027-02", 1, "EUR"),
        ("2026-11", 37, "EUR"),
        ("2026-11", 1, "E1R"),
    ):
        with pytest.raises(Invalid):
            metrics_series(conn, OPERATOR, month, NOW, months=months, currency=currency)


def test_past_months_use_the_asset_list_as_it_was(conn: Connection[Any]) -> None:
    """Asset-list changes are history: an asset taken off on 15 March and put back on 1 May
    counts in February's MRR (computed afterwards), not in March's or April's, and again in
    May's; March's invoice bills it for the 14 days it was listed."""
    h = subscribed_customer(conn, "hist", plan="proactive", starts_at=d(1), assets=3)
    removed = h.asset_ids[2]
    subscriptions.remove_asset(conn, OPERATOR, h.subscription_id, removed, ManualClock(d(3, 15)))
    conn.commit()
    subscriptions.add_assets(
        conn, OPERATOR, h.subscription_id, AssetList(asset_ids=[removed]), ManualClock(d(5))
    )
    conn.commit()
    months = metrics_series(conn, OPERATOR, "2026-06", NOW, months=5).months
    closing = {m.month: m.closing_mrr_minor for m in months}
    assert closing == {
        "2026-02": 3 * 2900,
        "2026-03": 2 * 2900,
        "2026-04": 2 * 2900,
        "2026-05": 3 * 2900,
        "2026-06": 3 * 2900,
    }
    assert [(m.contraction_mrr_minor, m.expansion_mrr_minor) for m in months[1:4]] == [
        (2900, 0),
        (0, 0),
        (0, 2900),
    ]
    march = billing.close_period(
        conn, "2026-03", ManualClock(d(4, 3)), customer_id=h.customer_id, issue=True
    )
    conn.commit()
    [invoice] = march.invoices
    fees = conn.execute(
        "SELECT asset_id, amount_minor, starts_at, ends_at FROM invoice_lines"
        " WHERE invoice_id = %s ORDER BY asset_id",
        (invoice.id,),
    ).fetchall()
    assert [(a, amount) for a, amount, _, _ in fees] == [
        (h.asset_ids[0], 2900),
        (h.asset_ids[1], 2900),
        (removed, round(2900 * 14 / 31)),
    ]
    assert fees[2][2:] == (d(3), d(3, 15))
    history = conn.execute(
        "SELECT listed_from, listed_to FROM subscription_asset_listings WHERE asset_id = %s"
        " ORDER BY listed_from",
        (removed,),
    ).fetchall()
    assert history == [(d(1), d(3, 15)), (d(5), None)]
