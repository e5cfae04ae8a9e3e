"""Contracts: pauses billed by the plan's pause rule (from the status history), yearly price
escalation, committed minimums, the cancellation rule, trials on a limited number of assets,
renewal reminders once per term, the notice period, renewals in the history."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import Connection

from fleetcare.clock import ManualClock
from fleetcare.errors import Conflict, Invalid
from maintenance.billing import service as billing
from maintenance.subscriptions import contracts
from maintenance.subscriptions import service as subscriptions
from maintenance.subscriptions.schemas import (
    AssetList,
    ContractTerms,
    PlanChange,
    SubscriptionUpdate,
)
from tests.fixtures.billing import (
    NOV_1,
    OPERATOR,
    add_plan,
    at,
    lines_of,
    move,
    subscribed_customer,
)

YEAR_END = ManualClock(at(5, month=1, year=2027))

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")


def _lines(
    conn: Connection[Any], customer_id: int, period: str = "2026-11"
) -> list[dict[str, Any]]:
    year, month = (int(x) for x in period.split("-"))
    after = at(2, month=month % 12 + 1, year=year + month // 12)
    result = billing.close_period(conn, period, ManualClock(after), customer_id=customer_id)
    conn.commit()
    assert result.failures == []
    [invoice] = result.invoices
    return lines_of(conn, invoice.id)


def _events(conn: Connection[Any], customer_id: int, type_: str) -> list[dict[str, Any]]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT payload FROM events WHERE customer_id = %s AND type = %s ORDER BY id",
            (customer_id, type_),
        )
    ]


def test_a_pause_is_billed_by_the_plans_pause_rule(conn: Connection[Any]) -> None:
    reduced = add_plan(
        conn,
        "pause-quarter",
        fee_per_asset_month_minor=3000,
        pause_rule="reduced",
        pause_fee_bps=2500,
    )
    free = subscribed_customer(conn, "pause-free", plan="proactive", starts_at=NOV_1)
    quarter = subscribed_customer(conn, "pause-quarter", plan="proactive", starts_at=NOV_1)
    from tests.fixtures.billing import change_plan

    change_plan(conn, quarter.subscription_id, "pause-quarter", NOV_1)
    for c in (free, quarter):
        move(conn, c.subscription_id, "paused", at(11))
        move(conn, c.subscription_id, "active", at(21))
    # Proactive (2900, pause free): 10 + 10 active days of 30 = 967 + 967; the pause is free
    fees = [r for r in _lines(conn, free.customer_id) if r["kind"] == "base_fee"]
    assert [(f["starts_at"], f["ends_at"], f["amount_minor"]) for f in fees] == [
        (NOV_1, at(11), 967),
        (at(21), at(1, month=12), 967),
    ]
    # 3000 a month, paused at 25 %: 1000 + 250 + 1000
    fees = [r for r in _lines(conn, quarter.customer_id) if r["kind"] == "base_fee"]
    assert [f["amount_minor"] for f in fees] == [1000, 250, 1000]
    assert [h.status for h in subscriptions.status_history(conn, quarter.subscription_id)] == [
        "active",
        "paused",
        "active",
    ]
    assert reduced


def test_escalation_commitment_and_early_termination(conn: Connection[Any]) -> None:
    # started a year and ten days before November's 11th: the anniversary cuts November
    terms = ContractTerms(escalation_bps=500, committed_assets=3, cancellation_rule="remainder")
    c = subscribed_customer(
        conn, "escalate", plan="proactive", starts_at=at(11, year=2025), contract=terms, assets=2
    )
    lines = _lines(conn, c.customer_id)
    fees = [
        (r["asset_id"], r["amount_minor"])
        for r in lines
        if r["kind"] == "base_fee" and not r["contract_charge"]
    ]
    a, b = c.asset_ids
    # 2900 for 10 days (967), then 2900 * 1.05 = 3045 for 20 days (2030), per asset
    assert fees == [(a, 967), (a, 2030), (b, 967), (b, 2030)]
    [commitment] = [r for r in lines if r["contract_charge"] == "commitment"]
    # 3 assets at the last fee (3045) for the whole month = 9135, billed 2 * 2997 = 5994
    assert commitment["amount_minor"] == 9135 - 5994

    # the term renewed on 11 November; cancelled now, on 5 December: the rest of the term
    # (to 11 November 2027) is owed
    assert contracts.advance_lifecycles(conn, ManualClock(at(12))) == 1
    conn.commit()
    move(conn, c.subscription_id, "cancelled", at(5, month=12))
    december = _lines(conn, c.customer_id, "2026-12")
    [ended] = [r for r in december if r["contract_charge"] == "early_termination"]
    # 3 committed assets at 3045 = 9135 a month: 27 of 31 days of December (7956), 10 whole
    # months, 10 of 30 days of November 2027 (3045)
    expected = 7956 + 10 * 9135 + 3045
    assert ended["amount_minor"] == expected
    # a point in time (recognised at cancellation), the span in its description
    assert (ended["starts_at"], ended["ends_at"]) == (at(5, month=12), at(5, month=12))
    # revenue recognition reconciles with these contract lines to the cent
    from maintenance.billing import service as billing_service
    from maintenance.revenue.service import revenue_report

    billing_service.close_period(
        conn, "2026-12", ManualClock(at(2, month=1, year=2027)), customer_id=c.customer_id,
        issue=True,
    )  # fmt: skip
    conn.commit()
    for month in ("2026-11", "2026-12"):
        assert revenue_report(conn, OPERATOR, month, YEAR_END).reconciled, month


def test_trial_limit_and_a_pilot_that_ends(conn: Connection[Any]) -> None:
    pilot = subscribed_customer(
        conn,
        "pilot",
        plan="proactive",
        starts_at=NOV_1,
        assets=2,
        trial_days=14,
        trial_asset_limit=2,
        trial_converts=False,
    )
    from fleet import service as fleet
    from fleet.schemas import AssetCreate

    extra = fleet.create_asset(
        conn,
        OPERATOR,
        AssetCreate(customer_id=pilot.customer_id, site_id=pilot.site_id, kind="tire", ref="X-3"),
    )
    with pytest.raises(Invalid) as refused:
        subscriptions.add_assets(
            conn,
            OPERATOR,
            pilot.subscription_id,
            AssetList(asset_ids=[extra.id]),
            ManualClock(at(2)),
        )
    assert refused.value.code == "trial_asset_limit"
    conn.rollback()
    assert contracts.advance_lifecycles(conn, ManualClock(at(16))) == 1
    conn.commit()
    view = subscriptions.get_subscription(
        conn, OPERATOR, pilot.subscription_id, ManualClock(at(16))
    )
    assert view.status == "cancelled" and view.ends_at == at(15)
    [ended] = _events(conn, pilot.customer_id, "subscription.cancelled")
    assert ended["reason"] == "trial_ended"
    # nothing is billed: the trial was free and it ended
    result = billing.close_period(conn, "2026-11", ManualClock(at(2, month=12)))
    conn.commit()
    assert pilot.customer_id not in {i.customer_id for i in result.invoices}


def test_renewal_reminder_notice_and_renewal(conn: Connection[Any]) -> None:
    terms = ContractTerms(notice_days=30, renewal_reminder_days=45)
    c = subscribed_customer(
        conn, "renew", plan="proactive", starts_at=at(1, year=2025), contract=terms
    )
    # the term ends 1 November 2026; the reminder is due from 17 September
    assert contracts.advance_lifecycles(conn, ManualClock(at(16, month=9))) == 0
    assert contracts.advance_lifecycles(conn, ManualClock(at(17, month=9))) == 1
    assert contracts.advance_lifecycles(conn, ManualClock(at(18, month=9))) == 0  # once a term
    conn.commit()
    [reminder] = _events(conn, c.customer_id, "subscription.renewal_upcoming")
    assert reminder["renews"] is True
    assert reminder["term_ends_at"].startswith("2026-11-01")
    assert reminder["notice_deadline"].startswith("2026-10-02")
    # non-renewal after the notice deadline: refused with a clear code
    with pytest.raises(Conflict) as late:
        subscriptions.update_subscription(
            conn,
            OPERATOR,
            c.subscription_id,
            SubscriptionUpdate(auto_renew=False),
            ManualClock(at(10, month=10)),
        )
    assert late.value.code == "notice_period_passed"
    conn.rollback()
    # a cancellation at term end given late ends the following term instead
    view = subscriptions.cancel(
        conn, OPERATOR, c.subscription_id, True, ManualClock(at(10, month=10))
    )
    assert view.cancel_effective_at == at(1, year=2027)
    conn.commit()
    # the term renews on 1 November (a 'renewal' row in the history) ...
    assert contracts.advance_lifecycles(conn, ManualClock(at(1, hour=1))) == 1
    conn.commit()
    history = subscriptions.status_history(conn, c.subscription_id)
    assert [(h.status, h.reason, h.valid_from) for h in history] == [
        ("active", "created", at(1, year=2025)),
        ("active", "renewal", NOV_1),
    ]
    # ... and ends at the next term's end, 1 November 2027
    assert contracts.advance_lifecycles(conn, ManualClock(at(1, hour=1, year=2027))) == 1
    conn.commit()
    ended = subscriptions.get_subscription(conn, OPERATOR, c.subscription_id, ManualClock(NOV_1))
    assert ended.status == "cancelled" and ended.ends_at == at(1, year=2027)
    assert history[0].valid_to == NOV_1


def test_contract_cli_and_history_route(
    conn: Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    monkeypatch.setenv("FLEETCARE_DATA_DIR", str(tmp_path))
    c = subscribed_customer(conn, "cli-terms", plan="proactive", starts_at=NOV_1)
    runner = CliRunner()
    sid = str(c.subscription_id)
    changed = runner.invoke(
        app, ["subscriptions", "terms", sid, "--notice-days", "90", "--cancellation-rule", "notice"]
    )
    assert changed.exit_code == 0, changed.output
    shown = runner.invoke(app, ["subscriptions", "show", sid, "--json"])
    assert shown.exit_code == 0, shown.output
    import json

    data = json.loads(shown.stdout)
    assert data["subscription"]["notice_days"] == 90
    assert data["subscription"]["cancellation_rule"] == "notice"
    assert [h["status"] for h in data["history"]] == ["active"]
    for args, message in [
        (["subscriptions", "terms", sid, "--cancellation-rule", "never"], "cancellation"),
        (["subscriptions", "terms", sid, "--committed-usage", "lots"], "--committed-usage"),
        (["subscriptions", "terms", sid, "--notice-days", "-1"], "--notice-days"),
        (["subscriptions", "terms", sid], "at least one"),
        (["subscriptions", "show", "999999"], "not found"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_billing_in_advance_bills_next_month_and_credits_it_after(conn: Connection[Any]) -> None:
    c = subscribed_customer(
        conn,
        "advance",
        plan="proactive",
        starts_at=NOV_1,
        contract=ContractTerms(billing_timing="advance"),
    )
    after_nov = ManualClock(at(3, month=12))
    [november] = billing.close_period(
        conn, "2026-11", after_nov, customer_id=c.customer_id, issue=True
    ).invoices
    conn.commit()
    lines = lines_of(conn, november.id)
    # November's fee (nothing was billed in advance for it) and December's, in advance
    assert [(r["starts_at"], r["ends_at"], r["amount_minor"]) for r in lines] == [
        (NOV_1, at(1, month=12), 2900),
        (at(1, month=12), at(1, month=1, year=2027), 2900),
    ]
    # paused 11-21 December (free): December really costs 10 + 11 of 31 days = 935 + 1029;
    # the 2900 billed in advance is credited, and January is billed in advance
    move(conn, c.subscription_id, "paused", at(11, month=12))
    move(conn, c.subscription_id, "active", at(21, month=12))
    [december] = billing.close_period(
        conn, "2026-12", ManualClock(at(2, month=1, year=2027)), customer_id=c.customer_id
    ).invoices
    conn.commit()
    amounts = [(r["unit"], r["amount_minor"]) for r in lines_of(conn, december.id)]
    assert amounts == [
        ("asset-days", 935),
        ("asset-days", 1029),
        ("advance", -2900),
        ("asset-days", 2900),
    ]
    assert december.total_minor == 935 + 1029 - 2900 + 2900
    # issued, the fees in advance and their credit reconcile with revenue recognition
    from maintenance.revenue.service import revenue_report

    billing.issue_invoice(conn, OPERATOR, december.id, ManualClock(at(2, month=1, year=2027)))
    conn.commit()
    for month in ("2026-11", "2026-12", "2027-01"):
        assert revenue_report(conn, OPERATOR, month, YEAR_END).reconciled, month


def test_a_plan_change_before_the_subscription_starts_changes_its_first_plan(
    conn: Connection[Any],
) -> None:
    """A subscription that starts next month, its plan changed today: the change dropped the
    subscription's only plan period (it lay in the future) and answered 500 (``max() arg is
    an empty sequence``). Now the plan is the new one from the start; a change at the term's
    end keeps the first plan until then."""
    from tests.fixtures.billing import DEC_1, change_plan, plan_id

    add_plan(conn, "later-plan", fee_per_asset_month_minor=1000)
    later = subscribed_customer(conn, "future-start", plan="proactive", starts_at=DEC_1)
    change_plan(conn, later.subscription_id, "later-plan", at(5))
    periods = subscriptions.plan_periods(conn, later.subscription_id)
    assert [(p.plan_id, p.effective_from, p.effective_to) for p in periods] == [
        (plan_id(conn, "later-plan"), DEC_1, None)
    ]
    sub = subscriptions.get_subscription(conn, OPERATOR, later.subscription_id, ManualClock(at(6)))
    ends = sub.current_term_ends_at
    subscriptions.change_plan(
        conn,
        OPERATOR,
        later.subscription_id,
        PlanChange(plan_id=plan_id(conn, "proactive"), at="term_end"),
        ManualClock(at(6)),
    )
    periods = subscriptions.plan_periods(conn, later.subscription_id)
    assert [(p.plan_id, p.effective_from, p.effective_to) for p in periods] == [
        (plan_id(conn, "later-plan"), DEC_1, ends),
        (plan_id(conn, "proactive"), ends, None),
    ]
