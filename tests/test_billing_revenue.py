"""Revenue recognition: exact schedules (largest remainder), and a scripted year of three
customers — a plan change, usage, a failure that earns a credit, a void, a correction, a
cancellation, taxes — whose monthly reports reconcile to the invoices to the cent; the CLI, the
journal CSV and the API."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection
from pypdf import PdfReader
from typer.testing import CliRunner

from cli.main import app as cli_app
from fleetcare.clock import ManualClock
from maintenance.billing import service as billing
from maintenance.documents import files
from maintenance.documents import service as documents
from maintenance.documents.schemas import BillingProfileUpdate, CorrectionRequest, CreditLineRequest
from maintenance.dunning import service as dunning
from maintenance.orders import service as orders
from maintenance.orders.schemas import FailureCreate
from maintenance.revenue import service as revenue
from maintenance.revenue.journal import Accounts, journal_csv
from maintenance.revenue.schedule import (
    Piece,
    credit_schedule,
    invoice_line_schedule,
    largest_remainder,
)
from maintenance.subscriptions import contracts
from maintenance.subscriptions import service as subscriptions
from tests.conftest import Tenant
from tests.fixtures.billing import OPERATOR, add_counter, change_plan, move, subscribed_customer
from tests.fixtures.events import check_back_office_events

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")

MONTHS = [f"2026-{m:02d}" for m in range(1, 13)]
YEAR_END = ManualClock(datetime(2027, 1, 5, tzinfo=UTC))


def _t(month: int, day: int = 1, hour: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_schedules_split_exactly() -> None:
    assert largest_remainder(100, [1, 1, 1]) == [34, 33, 33]
    assert largest_remainder(-100, [1, 1, 1]) == [-34, -33, -33]
    assert sum(largest_remainder(2900, [17, 31, 13])) == 2900
    # a fee over 20 Nov .. 10 Jan: by time, month by month, adding up to the cent
    pieces = invoice_line_schedule("base_fee", 10_001, "2026-11", _t(11, 20), _t(1, 10, year=2027))
    assert [p.month for p in pieces] == ["2026-11", "2026-12", "2027-01"]
    assert sum(p.amount_minor for p in pieces) == 10_001
    assert pieces[1].amount_minor == round(10_001 * 31 / 51)  # December's 31 of 51 days
    assert invoice_line_schedule("parts", 500, "2026-11", None, None) == [
        Piece("2026-11", 500, "completion")
    ]
    # a credit note in December of 3000 of that line: November's share moves to December
    reversal = credit_schedule(pieces, 10_001, 3000, "2026-12")
    assert [p.month for p in reversal] == ["2026-12", "2027-01"]
    assert sum(p.amount_minor for p in reversal) == -3000


def test_a_fee_line_shorter_than_a_second_is_recognised_in_its_month() -> None:
    """Two plan changes within a second leave a fee line of 0.47 s: its schedule raised
    ValueError ("largest_remainder needs a positive total weight") and GET /v1/revenue, the
    revenue page and ``fleetcare billing revenue`` answered 500 for the whole month."""
    start = datetime(2026, 12, 7, 19, 45, 3, 296151, tzinfo=UTC)
    end = datetime(2026, 12, 7, 19, 45, 3, 767048, tzinfo=UTC)
    assert invoice_line_schedule("base_fee", 0, "2026-12", start, end) == [
        Piece("2026-12", 0, "ratable")
    ]
    assert invoice_line_schedule("usage", 7, "2026-12", start, end) == [
        Piece("2026-12", 7, "usage")
    ]


def _scripted_year(conn: Connection[Any]) -> dict[str, int]:
    """Three customers over 2026, closed and issued on the 3rd of every next month and paid on
    the 12th: an upgrade, a failure that earns a credit, a late payment, a renewal, a pause, a
    churn, two voids billed again and a correction."""
    a = subscribed_customer(conn, "year-a", plan="proactive", starts_at=_t(1), assets=2)
    b = subscribed_customer(conn, "year-b", plan="proactive", starts_at=_t(2, 15))
    # c: a six-month term, renewed on 1 July
    c = subscribed_customer(
        conn, "year-c", plan="monitor", starts_at=_t(1), assets=3, term_months=6
    )
    for cust, country, vat in ((a, "DE", None), (b, "FR", "FR12345678901")):
        documents.set_billing_profile(
            conn, OPERATOR, cust.customer_id,
            BillingProfileUpdate(legal_name=f"Customer {cust.customer_id}", country=country,
                                 customer_type="business", vat_id=vat),
            ManualClock(_t(1)),
        )  # fmt: skip
    conn.commit()
    # a: tire 1 moves to per-km full service on 11 April; it drives 1000 km a month
    change_plan(conn, a.subscription_id, "full-service-tire", _t(4, 11))
    add_counter(conn, a.asset_ids[0], [(_t(m, 2), 1000.0 * m) for m in range(4, 13)])
    add_counter(conn, a.asset_ids[1], [(_t(m, 2), 500.0 * m) for m in range(4, 13)])
    # a: tire 2 fails on 14 June with nothing predicted: the plan's promise earns a credit
    orders.report_failure(
        conn, OPERATOR, FailureCreate(asset_id=a.asset_ids[1], component="tire",
                                      failed_at=_t(6, 14)), ManualClock(_t(6, 14, 1)),
    )  # fmt: skip
    conn.commit()
    late: int | None = None
    for month in range(1, 13):
        clock = ManualClock(_t(month % 12 + 1, 3, year=2026 + (month == 12)))
        if month == 4:  # a's February invoice, due 2 April, is 15 days late: reminders, and
            # a goes past due; it pays on 20 April and is active again
            assert late is not None
            dunning.run_dunning(conn, ManualClock(_t(4, 17, 1)))
            conn.commit()
            assert subscriptions.subscription_by_id(conn, a.subscription_id).status == "past_due"
            dunning.pay_in_full(conn, OPERATOR, late, ManualClock(_t(4, 20)))
            conn.commit()
            assert subscriptions.subscription_by_id(conn, a.subscription_id).status == "active"
        if month == 7:  # c's first term ends on 1 July: it renews
            contracts.advance_lifecycles(conn, ManualClock(_t(7, 1, 1)))
            conn.commit()
        if month == 9:  # b pauses for September (Proactive pauses for free)
            move(conn, b.subscription_id, "paused", _t(9))
            move(conn, b.subscription_id, "active", _t(10))
        if month == 8:  # c cancels on 20 August
            subscriptions.cancel(conn, OPERATOR, c.subscription_id, False, ManualClock(_t(8, 20)))
            conn.commit()
        result = billing.close_period(conn, MONTHS[month - 1], clock, issue=True)
        conn.commit()
        assert result.failures == []
        invoices = {i.customer_id: i for i in result.invoices}
        if month == 3:  # b's March invoice is voided on 10 April: a credit note; closing March
            # again the same day bills it under a new number
            billing.void_invoice(
                conn, OPERATOR, invoices[b.customer_id].id, "wrong", ManualClock(_t(4, 10))
            )
            conn.commit()
            again = billing.close_period(conn, MONTHS[2], ManualClock(_t(4, 10)),
                                         customer_id=b.customer_id, issue=True)  # fmt: skip
            conn.commit()
            assert [i.replaces_invoice_id for i in again.invoices] == [invoices[b.customer_id].id]
        if month == 6:  # a's June invoice (it carries tire 2's credit) is voided on 5 July and
            # billed again: the credit comes back on the replacement, once
            billing.void_invoice(
                conn, OPERATOR, invoices[a.customer_id].id, "PO missing", ManualClock(_t(7, 5))
            )
            conn.commit()
            again = billing.close_period(conn, MONTHS[5], ManualClock(_t(7, 5)),
                                         customer_id=a.customer_id, issue=True)  # fmt: skip
            conn.commit()
            assert [i.replaces_invoice_id for i in again.invoices] == [invoices[a.customer_id].id]
        if month == 5:  # a's May invoice is corrected on 20 June: part of line 1
            documents.correct_invoice(
                conn, OPERATOR, invoices[a.customer_id].id,
                CorrectionRequest(reason="goodwill",
                                  lines=[CreditLineRequest(line_no=1, amount_minor=99)]),
                ManualClock(_t(6, 20)),
            )  # fmt: skip
            conn.commit()
        if month == 2:
            late = invoices[a.customer_id].id
        # every issued invoice is paid on the 12th, but a's February one
        paid_on = ManualClock(_t(month % 12 + 1, 12, year=2026 + (month == 12)))
        for (invoice_id,) in conn.execute(
            "SELECT id FROM invoices WHERE status = 'issued' ORDER BY id"
        ).fetchall():
            if invoice_id != late:
                dunning.pay_in_full(conn, OPERATOR, invoice_id, paid_on)
        conn.commit()
    return {"a": a.customer_id, "b": b.customer_id, "c": c.customer_id}


def test_a_scripted_year_reconciles_every_month(
    conn: Connection[Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    who = _scripted_year(conn)
    # the year emitted the back office's events, each as the catalogue describes it
    assert {
        "subscription.created", "subscription.plan_changed", "subscription.cancelled",
        "subscription.renewed", "subscription.paused", "subscription.past_due",
        "invoice.payment_reminder",
        "invoice.payment_recorded", "invoice.paid",
        "service_credit.earned", "invoice.issued", "invoice.voided", "credit_note.issued",
    } <= check_back_office_events(conn)  # fmt: skip
    # b paused for September, for free: no invoice, no revenue that month
    assert conn.execute(
        "SELECT count(*) FROM invoices WHERE customer_id = %s AND period = '2026-09'"
        " AND status <> 'void'",
        (who["b"],),
    ).fetchone() == (0,)
    reports = {m: revenue.revenue_report(conn, OPERATOR, m, YEAR_END) for m in MONTHS}
    assert all(r.reconciled for r in reports.values()), [
        (m, [c for c in r.checks if not c.ok]) for m, r in reports.items()
    ]
    # each month's closing balances are the next month's opening ones, row by row
    for before, after in itertools.pairwise(MONTHS):
        closing = {(r.customer_id, r.plan_id): r for r in reports[before].rows}
        for row in reports[after].rows:
            prev = closing.get((row.customer_id, row.plan_id))
            assert row.deferred.opening_minor == (prev.deferred.closing_minor if prev else 0)
            assert row.unbilled.opening_minor == (prev.unbilled.closing_minor if prev else 0)
    # billed in arrears: each month's revenue is unbilled at its end and billed the next month
    june = {r.customer_id: r for r in reports["2026-06"].rows if r.plan_id is not None}
    assert june[who["c"]].unbilled.closing_minor == june[who["c"]].recognised_minor == 3 * 900
    # the year in total: everything billed (invoices - credit notes) is recognised or still
    # unbilled/deferred, to the cent
    totals = conn.execute(
        "SELECT (SELECT coalesce(sum(total_minor), 0) FROM invoices WHERE issued_at IS NOT NULL)"
        " - (SELECT coalesce(sum(total_minor), 0) FROM credit_notes)"
    ).fetchone()
    assert totals is not None
    billed = sum(r.totals["EUR"].deferred.billed_minor for r in reports.values())
    billed += (
        revenue.revenue_report(conn, OPERATOR, "2027-01", YEAR_END)
        .totals["EUR"]
        .deferred.billed_minor
    )
    assert billed == totals[0]
    recognised = sum(r.totals["EUR"].recognised_minor for r in reports.values())
    dec = reports["2026-12"].totals["EUR"]
    assert recognised + dec.deferred.closing_minor - dec.unbilled.closing_minor == billed - (
        revenue.revenue_report(conn, OPERATOR, "2027-01", YEAR_END)
        .totals["EUR"]
        .deferred.billed_minor
    )
    # the void of b's March invoice (issued 3 April, voided 10 April) and its replacement
    # (issued 10 April): billed, credited and billed again in April. Both were unbilled
    # revenue of March when March ended; the credit note reverses the void one in April (a
    # month is never restated), against April's fee
    april_b = [r for r in reports["2026-04"].rows if r.customer_id == who["b"]]
    assert sum(r.deferred.billed_minor for r in april_b) == 2900 - 2900 + 2900
    assert sum(r.recognised_minor for r in april_b) == 2900 - 2900
    march_b = [r for r in reports["2026-03"].rows if r.customer_id == who["b"]]
    assert sum(r.recognised_minor for r in march_b) == 2 * 2900
    by_customer: dict[int, int] = defaultdict(int)
    for m in MONTHS:
        for r in reports[m].rows:
            by_customer[r.customer_id] += r.recognised_minor
    # cancelled on 20 August: 19 days of 3 assets, each line rounded once
    assert by_customer[who["c"]] == 7 * 2700 + 3 * round(900 * 19 / 31)

    # June's invoice of a carries the credit earned by tire 2's failure, with its tax: the
    # whole subscription is on full service since April, which promises 10 % of the tire's
    # charges of the month (500 km at 4.00 per 1000 km: 2.00)
    june_a = conn.execute(
        "SELECT i.status, l.amount_minor, l.tax_minor, i.id = sc.invoice_id FROM invoice_lines l"
        " JOIN invoices i ON i.id = l.invoice_id"
        " JOIN service_credits sc ON sc.id = l.service_credit_id"
        " WHERE i.customer_id = %s AND l.kind = 'service_credit' ORDER BY i.id",
        (who["a"],),
    ).fetchall()
    # on the void June invoice (reversed by its credit note), then on its replacement, which
    # applied it: credited once in all
    assert june_a == [("void", -20, -4, False), ("paid", -20, -4, True)]
    credited_back = conn.execute(
        "SELECT sum(cl.amount_minor) FROM credit_note_lines cl JOIN invoice_lines l"
        " ON l.id = cl.invoice_line_id WHERE l.kind = 'service_credit'"
    ).fetchone()
    assert credited_back == (-20,)
    # every document of the year renders, numbered, and reads back
    for (invoice_id,) in conn.execute("SELECT id FROM invoices ORDER BY id").fetchall():
        name, body = files.invoice_pdf(conn, OPERATOR, invoice_id)
        text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages)
        assert name.removesuffix(".pdf") in text and "Total due" in text
        replaced = conn.execute(
            "SELECT r.number FROM invoices i JOIN invoices r ON r.id = i.replaces_invoice_id"
            " WHERE i.id = %s",
            (invoice_id,),
        ).fetchone()
        if replaced is not None:  # the replacements of the two voids name the void invoice
            assert f"invoice {replaced[0]}" in text and "Replaces" in text
    for (note_id,) in conn.execute("SELECT id FROM credit_notes ORDER BY id").fetchall():
        name, body = files.credit_note_pdf(conn, OPERATOR, note_id)
        assert name.removesuffix(".pdf") in PdfReader(io.BytesIO(body)).pages[0].extract_text()

    # the journal: every entry balances; the accounts are the ones given
    journal = journal_csv(reports["2026-06"], Accounts.parse(["revenue=7000", "deferred=2900"]))
    legs = list(csv.DictReader(io.StringIO(journal)))
    assert {leg["account"] for leg in legs} <= {"1200", "1250", "2900", "2200", "7000"}
    per_entry: dict[str, int] = defaultdict(int)
    for leg in legs:
        per_entry[leg["entry"]] += int(leg["debit_minor"]) - int(leg["credit_minor"])
    assert per_entry and all(v == 0 for v in per_entry.values())
    revenue_credit = sum(int(leg["credit_minor"]) - int(leg["debit_minor"]) for leg in legs
                         if leg["account"] == "7000")  # fmt: skip
    assert revenue_credit == reports["2026-06"].totals["EUR"].recognised_minor

    # the command prints the same report and checks it
    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    runner = CliRunner()
    out = runner.invoke(cli_app, ["billing", "revenue", "--month", "2026-06", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["totals"]["EUR"]["recognised_minor"] == (
        reports["2026-06"].totals["EUR"].recognised_minor
    )
    table = runner.invoke(cli_app, ["billing", "revenue", "--month", "2026-06"])
    assert table.exit_code == 0 and "check rollforward: ok" in table.output
    bad = runner.invoke(cli_app, ["billing", "journal", "--month", "2026-06", "--account", "x=1"])
    assert bad.exit_code == 2 and "NAME=CODE" in bad.output
    assert runner.invoke(cli_app, ["billing", "revenue", "--month", "2026-13"]).exit_code == 2


def test_unbilled_revenue_covers_months_that_have_no_invoice_yet(
    conn: Connection[Any],
) -> None:
    """Usage of the month in progress and fees billed in arrears are unbilled revenue before
    any invoice (or draft) of them exists; the report writes nothing and still reconciles."""
    u = subscribed_customer(conn, "unb-u", plan="full-service-tire", starts_at=_t(10))
    f = subscribed_customer(conn, "unb-f", plan="proactive", starts_at=_t(10), assets=2)
    add_counter(conn, u.asset_ids[0], [(_t(10, 2), 1000.0), (_t(10, 30), 2000.0),
                                       (_t(11, 2), 2100.0), (_t(11, 19), 3600.0)])  # fmt: skip
    mid_november = ManualClock(_t(11, 20))
    # October is over but not closed; November is in progress: neither has an invoice
    report = revenue.revenue_report(conn, OPERATOR, "2026-11", mid_november)
    assert report.reconciled, [c for c in report.checks if not c.ok]
    rows = {r.customer_id: r for r in report.rows}
    # 1000 km in October + 1600 km so far in November, at 4.00 per 1000 km
    assert rows[u.customer_id].unbilled.opening_minor == 400
    assert rows[u.customer_id].recognised_minor == 640
    assert rows[u.customer_id].unbilled.closing_minor == 400 + 640
    # two assets at 29.00 a month, in arrears: October's and November's fees
    assert rows[f.customer_id].unbilled.closing_minor == 2 * 2 * 2900
    assert rows[f.customer_id].deferred.closing_minor == 0
    # the report drafted nothing that stays
    assert conn.execute(
        "SELECT (SELECT count(*) FROM invoices) + (SELECT count(*) FROM usage_records)"
    ).fetchone() == (0,)
    # once October is invoiced (issued 3 November ... here, 20 November), its part moves from
    # unbilled to billed, and the total stays the same
    billing.close_period(conn, "2026-10", mid_november, issue=True)
    conn.commit()
    after = revenue.revenue_report(conn, OPERATOR, "2026-11", mid_november)
    assert after.reconciled
    moved = {r.customer_id: r for r in after.rows}
    assert moved[u.customer_id].unbilled.closing_minor == 640
    assert moved[u.customer_id].unbilled.billed_minor == 400
    assert moved[f.customer_id].unbilled.closing_minor == 2 * 2900


def test_revenue_routes(
    client: TestClient, conn: Connection[Any], operator_headers: dict[str, str],
    make_tenant: Any,
) -> None:  # fmt: skip
    client.app.state.clock = ManualClock(_t(12, 3))  # type: ignore[attr-defined]
    a: Tenant = make_tenant("rev-a")
    b: Tenant = make_tenant("rev-b")
    ca = subscribed_customer(conn, "rev-a", plan="proactive", starts_at=_t(11))
    result = billing.close_period(conn, "2026-11", ManualClock(_t(12, 3)), issue=True)
    conn.commit()
    invoice = result.invoices[0]
    assert invoice.customer_id == ca.customer_id
    report = client.get("/v1/revenue", params={"month": "2026-11"}, headers=operator_headers)
    assert report.status_code == 200 and report.json()["reconciled"] is True
    assert (
        client.get("/v1/revenue", params={"month": "2026-11"}, headers=a.headers).status_code == 403
    )
    assert (
        client.get("/v1/revenue", params={"month": "11-2026"}, headers=operator_headers).status_code
        == 422
    )
    journal = client.get(
        "/v1/revenue/journal.csv", params={"month": "2026-11", "revenue": "4100"},
        headers=operator_headers,
    )  # fmt: skip
    assert journal.status_code == 200 and ",4100," in journal.text
    schedule = client.get(f"/v1/invoices/{invoice.id}/revenue-schedule", headers=a.headers)
    assert schedule.status_code == 200
    assert schedule.json()[0]["pieces"] == [
        {"month": "2026-11", "amount_minor": 2900, "rule": "ratable"}
    ]
    assert (
        client.get(f"/v1/invoices/{invoice.id}/revenue-schedule", headers=b.headers).status_code
        == 404
    )
