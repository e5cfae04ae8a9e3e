"""Invoice documents: tax per line (domestic, reverse charge, outside the EU), gap-free invoice
and credit-note numbers (also under concurrent issuers), voids and corrections as credit notes,
service credits from failures, and PDFs read back as text."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import Connection
from pypdf import PdfReader

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from fleetcare.errors import Conflict, Invalid
from maintenance.billing import service as billing
from maintenance.documents import credits as service_credits
from maintenance.documents import files
from maintenance.documents import repository as repo
from maintenance.documents import service as documents
from maintenance.documents.schemas import (
    BillingProfileUpdate,
    CorrectionRequest,
    CreditLineRequest,
    SellerUpdate,
)
from maintenance.documents.tax import Buyer, Rate, check_vat_id, decide, line_tax
from maintenance.orders import service as orders
from maintenance.orders.schemas import CompleteRequest, FailureCreate, PartUse
from tests.conftest import Tenant
from tests.fixtures.billing import OPERATOR, at, lines_of, subscribed_customer
from tests.test_dashboard import sign_in

# every back-office event these tests emit matches its catalogue entry
pytestmark = pytest.mark.usefixtures("events_match_catalogue")

AFTER_NOV = ManualClock(at(3, month=12))
RATES = {
    (country, kind): Rate(rate, eu, regime)
    for country, rate, eu, regime in [
        ("DE", 1900, True, "vat"),
        ("FR", 2000, True, "vat"),
        ("GB", 2000, False, "vat"),
        ("US", 0, False, "none"),
    ]
    for kind in ("business", "consumer")
}


def test_tax_rules_and_vat_id_formats() -> None:
    domestic = decide("DE", Buyer("DE", "business", "DE123456789"), RATES)
    assert (domestic.category, domestic.rate_bps) == ("standard", 1900)
    reverse = decide("DE", Buyer("FR", "business", "FR12345678901"), RATES)
    assert (reverse.category, reverse.rate_bps) == ("reverse_charge", 0)
    assert "Art. 196" in reverse.note
    # an EU business that gave no VAT id pays the VAT of its country, like a consumer
    assert decide("DE", Buyer("FR", "business", None), RATES).rate_bps == 2000
    assert decide("DE", Buyer("FR", "consumer", None), RATES).rate_bps == 2000
    # outside the EU: an export of services, for businesses and consumers alike
    for buyer in (Buyer("US", "business", None), Buyer("GB", "consumer", None)):
        export = decide("DE", buyer, RATES)
        assert (export.category, export.rate_bps) == ("outside_scope", 0)
        assert f"place of supply {buyer.country}" in export.note
    # a seller established in GB charges GB VAT at home; the US has no VAT
    assert decide("GB", Buyer("GB", "consumer", None), RATES).rate_bps == 2000
    assert decide("US", Buyer("US", "business", None), RATES).category == "outside_scope"
    # a country without a rule is refused, never guessed
    with pytest.raises(Invalid, match="'BR'") as refused:
        decide("DE", Buyer("BR", "business", None), RATES)
    assert refused.value.code == "no_tax_rule"
    assert check_vat_id("de 123.456.789", "DE") == "DE123456789"
    assert check_vat_id("EL123456789", "GR") == "EL123456789"
    for bad, country in [("DE12345", "DE"), ("FR123456789", "DE"), ("NL123456789", "NL")]:
        with pytest.raises(ValueError):
            check_vat_id(bad, country)
    assert line_tax(2900, 1900) == 551 and line_tax(-725, 1900) == -138
    assert line_tax(250, 1000) == 25 and line_tax(5, 1000) == 0  # 0.5 -> 0 (half to even)


def test_tax_rates_are_dated_data_and_cover_common_countries_outside_the_eu(
    conn: Connection[Any],
) -> None:
    rates = documents.list_tax_rates(conn, OPERATOR)
    countries = {r.country for r in rates}
    assert {"DE", "FR", "IT", "GB", "CH", "NO", "US"} <= countries and len(countries) >= 33
    eu = {r.country for r in rates if r.eu}
    assert len(eu) == 27 and not {"GB", "CH", "NO", "US"} & eu
    # rates change on their dates: Finland's 24 % until 31 August 2024, 25.5 % from 1 September
    on = {
        day: decide("FI", Buyer("FI", "consumer", None), repo.tax_rates(conn, date(*day)))
        for day in [(2024, 8, 31), (2024, 9, 1)]
    }
    assert [d.rate_bps for d in on.values()] == [2400, 2550]
    # the tax point of an invoice is the last day of its period
    assert documents.tax_date(at(1, month=12)) == date(2026, 11, 30)
    # a billing profile in a country without a rule is refused with the country named
    with pytest.raises(Invalid, match="'BR'"):
        documents.set_billing_profile(
            conn, OPERATOR, subscribed_customer(conn, "tax-br", plan="proactive",
                                                starts_at=at(1)).customer_id,
            BillingProfileUpdate(legal_name="Transportes", country="BR",
                                 customer_type="business"),
            AFTER_NOV,
        )  # fmt: skip
    conn.rollback()


def _profile(conn: Connection[Any], customer_id: int, **fields: Any) -> None:
    documents.set_billing_profile(
        conn, OPERATOR, customer_id, BillingProfileUpdate(**fields), AFTER_NOV
    )
    conn.commit()


def _close(conn: Connection[Any], issue: bool = True) -> dict[int, Any]:
    result = billing.close_period(conn, "2026-11", AFTER_NOV, issue=issue)
    conn.commit()
    assert result.failures == []
    return {i.customer_id: i for i in result.invoices}


def _pdf_text(body: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)


def test_tax_per_line_numbers_void_and_correction_credit_notes(conn: Connection[Any]) -> None:
    documents.set_seller(
        conn,
        OPERATOR,
        SellerUpdate(
            legal_name="Fleetcare GmbH",
            address="Hafenstraße 1\n20457 Hamburg",
            country="DE",
            vat_id="DE811111111",
        ),
        AFTER_NOV,
    )
    home = subscribed_customer(conn, "tax-home", plan="proactive", starts_at=at(1), assets=2)
    french = subscribed_customer(conn, "tax-fr", plan="proactive", starts_at=at(1))
    swiss = subscribed_customer(conn, "tax-ch", plan="proactive", starts_at=at(16))
    _profile(conn, home.customer_id, legal_name="Home GmbH", country="DE", customer_type="business")
    _profile(
        conn,
        french.customer_id,
        legal_name="Transports Dupont SA",
        address="1 rue de la Paix\n75002 Paris",
        country="FR",
        customer_type="business",
        vat_id="FR 12 345678901",
    )
    _profile(
        conn, swiss.customer_id, legal_name="Bergbahn AG", country="CH", customer_type="business"
    )
    invoices = _close(conn)
    h, f, s = (invoices[c.customer_id] for c in (home, french, swiss))
    # domestic: 19 % per line, 2 x 2900 -> 2 x 551
    assert (h.total_minor, h.tax_minor, h.gross_minor) == (5800, 1102, 6902)
    assert [
        (r.tax_category, r.tax_rate_bps, r.tax_minor)
        for r in billing.get_invoice(conn, OPERATOR, h.id).lines
    ] == [("standard", 1900, 551)] * 2
    # reverse charge: no VAT, the note and the buyer's VAT id on the document
    assert (f.total_minor, f.tax_minor) == (2900, 0)
    assert f.buyer is not None and f.buyer["vat_id"] == "FR12345678901"
    assert "reverse charge" in f.buyer["tax_note"].lower()
    assert (s.total_minor, s.tax_minor) == (1450, 0) and s.buyer["tax_category"] == "outside_scope"
    # gap-free numbers in the order of issue
    numbers = sorted(i.number for i in invoices.values())
    assert numbers == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]

    # a correction credits part of a line; the invoice does not change
    before = lines_of(conn, h.id)
    note = documents.correct_invoice(
        conn,
        OPERATOR,
        h.id,
        CorrectionRequest(
            reason="asset 2 was off the road",
            lines=[CreditLineRequest(line_no=2, amount_minor=1000)],
        ),
        AFTER_NOV,
    )
    conn.commit()
    assert (note.number, note.kind, note.total_minor, note.tax_minor) == (
        "CN-2026-000001",
        "correction",
        1000,
        190,
    )
    with pytest.raises(Invalid):  # 1900 are left on line 2
        documents.correct_invoice(
            conn,
            OPERATOR,
            h.id,
            CorrectionRequest(reason="x", lines=[CreditLineRequest(line_no=2, amount_minor=1901)]),
            AFTER_NOV,
        )
    conn.rollback()
    # a void credits what remains of every line: 2900 + 1900, and reverses the rest of the tax
    voided = billing.void_invoice(conn, OPERATOR, h.id, "wrong customer", AFTER_NOV)
    conn.commit()
    assert voided.status == "void" and lines_of(conn, h.id) == before
    [cn1, cn2] = sorted(
        documents.list_credit_notes(conn, OPERATOR, invoice_id=h.id, after=None, limit=10)[0],
        key=lambda n: n.id,
    )
    assert (cn2.number, cn2.kind, cn2.total_minor) == ("CN-2026-000002", "void", 4800)
    assert cn1.total_minor + cn2.total_minor == h.total_minor
    assert cn1.tax_minor + cn2.tax_minor == h.tax_minor
    with pytest.raises(Conflict):
        billing.void_invoice(conn, OPERATOR, h.id, "again", AFTER_NOV)
    conn.rollback()
    # the database refuses to edit a credit note or an issued invoice's document
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE credit_notes SET total_minor = 1 WHERE id = %s", (cn1.id,))
    conn.rollback()
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE invoices SET number = 'X' WHERE id = %s", (f.id,))
    conn.rollback()
    events = conn.execute(
        "SELECT count(*) FROM events WHERE type = 'credit_note.issued'"
    ).fetchone()
    assert events == (2,)

    # the documents render, and their text reads back
    name, body = files.invoice_pdf(conn, OPERATOR, f.id)
    text = _pdf_text(body)
    assert name == f"{f.number}.pdf" and body.startswith(b"%PDF")
    for expected in (
        "Invoice",
        f.number,
        "Fleetcare GmbH",
        "DE811111111",
        "Transports Dupont SA",
        "FR12345678901",
        "Reverse charge",
        "29.00 EUR",
        "Total due",
        "2026-11",
    ):
        assert expected in text, expected
    _, body = files.credit_note_pdf(conn, OPERATOR, cn2.id)
    text = _pdf_text(body)
    for expected in (
        "Credit note",
        "CN-2026-000002",
        h.number,
        "wrong customer",
        "48.00 EUR",
        "9.12 EUR",
        "Home GmbH",
    ):
        assert expected in text, expected


def test_concurrent_issuers_get_gap_free_numbers(db_url: str, conn: Connection[Any]) -> None:
    customers = [
        subscribed_customer(conn, f"num-{n}", plan="proactive", starts_at=at(1)) for n in range(4)
    ]
    invoices = _close(conn)
    ids = [invoices[c.customer_id].id for c in customers]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def issuer(mine: list[int]) -> None:
        try:
            with connect(db_url) as own:
                barrier.wait(timeout=10)
                for invoice_id in mine:
                    documents.correct_invoice(
                        own,
                        OPERATOR,
                        invoice_id,
                        CorrectionRequest(
                            reason="goodwill",
                            lines=[CreditLineRequest(line_no=1, amount_minor=100)],
                        ),
                        AFTER_NOV,
                    )
                    own.commit()
        except BaseException as exc:
            errors.append(exc)

    # a credit note rolled back gives its number back
    documents.correct_invoice(
        conn,
        OPERATOR,
        ids[0],
        CorrectionRequest(reason="oops", lines=[CreditLineRequest(line_no=1, amount_minor=1)]),
        AFTER_NOV,
    )
    conn.rollback()
    threads = [threading.Thread(target=issuer, args=(ids[k::2],)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    numbers = [r[0] for r in conn.execute("SELECT number FROM credit_notes ORDER BY number")]
    assert numbers == [f"CN-2026-{n:06d}" for n in range(1, 5)]


def test_a_failure_before_its_due_date_earns_a_credit_on_the_next_invoice(
    conn: Connection[Any],
) -> None:
    # proactive promises 25 % of the asset's charges of the month
    c = subscribed_customer(conn, "credit-a", plan="proactive", starts_at=at(1), assets=2)
    report = orders.report_failure(
        conn,
        OPERATOR,
        FailureCreate(asset_id=c.asset_ids[0], component="tire", failed_at=at(14, 9)),
        ManualClock(at(14, 10)),
    )
    conn.commit()
    # the billing worker's step earns the credits right away (announced before any close)
    assert service_credits.assess_recent_failures(conn, at(14, 11)) == 2
    assert service_credits.assess_recent_failures(conn, at(14, 12)) == 0
    conn.commit()
    # the failure raised a repair order: the promise makes its parts and labour free, once
    # it is done and billed
    assert report.order_id is not None
    orders.complete_order(
        conn,
        OPERATOR,
        report.order_id,
        CompleteRequest(parts_used=[PartUse(sku="TIRE-315-80R22.5", quantity=1)]),
        ManualClock(at(16)),
    )
    conn.commit()
    invoice = _close(conn, issue=False)[c.customer_id]
    lines = lines_of(conn, invoice.id)
    assert [(r["kind"], r["amount_minor"]) for r in lines] == [
        ("base_fee", 2900),
        ("base_fee", 2900),
        ("parts", 45_000),
        ("labour", 6_750),
        ("service_credit", -725),  # 25 % of the failed asset's 2900
        ("service_credit", -51_750),  # the repair
    ]
    assert lines[-2]["asset_id"] == c.asset_ids[0]
    assert invoice.total_minor == 2 * 2900 - 725
    credits = documents.list_service_credits(
        conn, OPERATOR, period="2026-11", asset_id=None, after=None, limit=10
    )[0]
    assert [(x.kind, x.failure_report_id, x.invoice_id) for x in credits] == [
        ("percent", report.id, None),
        ("free_repair", report.id, None),
    ]
    assert "no maintenance was predicted" in credits[0].reason
    # closing again finds the same credit, once; the event was emitted once
    _close(conn, issue=False)
    assert conn.execute(
        "SELECT count(*) FROM events WHERE type = 'service_credit.earned'"
    ).fetchone() == (2,)
    issued = _close(conn)[c.customer_id]
    credits = documents.list_service_credits(
        conn, OPERATOR, period=None, asset_id=None, after=None, limit=10
    )[0]
    assert [(x.invoice_id, x.amount_minor) for x in credits] == [
        (issued.id, 725),
        (issued.id, 51_750),
    ]
    # voiding that invoice reverses everything on it, the credits included: they are pending
    # again, and closing the month again puts them on the replacement, once
    billing.void_invoice(conn, OPERATOR, issued.id, "re-bill", AFTER_NOV)
    conn.commit()
    credits = documents.list_service_credits(
        conn, OPERATOR, period=None, asset_id=None, after=None, limit=10
    )[0]
    assert [x.invoice_id for x in credits] == [None, None]
    replacement = _close(conn)[c.customer_id]
    assert replacement.id != issued.id and replacement.replaces_invoice_id == issued.id
    assert [(r["kind"], r["amount_minor"]) for r in lines_of(conn, replacement.id)] == [
        (r["kind"], r["amount_minor"]) for r in lines
    ]
    credits = documents.list_service_credits(
        conn, OPERATOR, period=None, asset_id=None, after=None, limit=10
    )[0]
    assert [(x.invoice_id, x.amount_minor) for x in credits] == [
        (replacement.id, 725),
        (replacement.id, 51_750),
    ]
    december = billing.close_period(conn, "2026-12", ManualClock(at(2, month=1, year=2027)))
    conn.commit()
    [dec] = [i for i in december.invoices if i.customer_id == c.customer_id]
    assert [r["kind"] for r in lines_of(conn, dec.id)] == ["base_fee", "base_fee"]


def test_document_routes_are_confined_and_validate(
    client: TestClient,
    conn: Connection[Any],
    operator_headers: dict[str, str],
    make_tenant: Callable[..., Tenant],
) -> None:
    client.app.state.clock = AFTER_NOV  # type: ignore[attr-defined]
    a, b = make_tenant("doc-a"), make_tenant("doc-b")
    ca = subscribed_customer(conn, "doc-a", plan="proactive", starts_at=at(1))
    invoice = _close(conn)[ca.customer_id]
    got = client.get(f"/v1/invoices/{invoice.id}/pdf", headers=a.headers)
    assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
    assert invoice.number in _pdf_text(got.content)
    assert client.get(f"/v1/invoices/{invoice.id}/pdf", headers=b.headers).status_code == 404
    bad = client.put(
        f"/v1/customers/{ca.customer_id}/billing-profile",
        json={"legal_name": "A", "country": "DE", "customer_type": "business", "vat_id": "DE12"},
        headers=a.headers,
    )
    assert bad.status_code == 422 and "DE" in bad.text
    ok = client.put(
        f"/v1/customers/{ca.customer_id}/billing-profile",
        json={
            "legal_name": "A GmbH",
            "country": "AT",
            "customer_type": "business",
            "vat_id": "ATU12345678",
        },
        headers=a.headers,
    )
    assert ok.status_code == 200, ok.text
    assert (
        client.put(
            f"/v1/customers/{ca.customer_id}/billing-profile",
            json={"legal_name": "B", "country": "DE", "customer_type": "consumer"},
            headers=b.headers,
        ).status_code
        == 404
    )
    assert (
        client.put(
            "/v1/billing/seller", json={"legal_name": "X", "country": "DE"}, headers=a.headers
        ).status_code
        == 403
    )
    note = client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"reason": "goodwill", "lines": [{"line_no": 1, "amount_minor": 500}]},
        headers=operator_headers,
    )
    assert note.status_code == 201, note.text
    note_id = note.json()["id"]
    assert client.get(f"/v1/credit-notes/{note_id}", headers=a.headers).status_code == 200
    assert client.get(f"/v1/credit-notes/{note_id}", headers=b.headers).status_code == 404
    assert client.get(f"/v1/credit-notes/{note_id}/pdf", headers=b.headers).status_code == 404
    assert client.get("/v1/credit-notes", headers=b.headers).json()["items"] == []
    too_much = client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"reason": "x", "lines": [{"line_no": 1, "amount_minor": 10**6}]},
        headers=operator_headers,
    )
    assert too_much.status_code == 422 and too_much.json()["code"] == "credit_exceeds_line"
    missing = client.post(
        f"/v1/invoices/{invoice.id}/credit-notes",
        json={"reason": "x", "lines": [{"line_no": 9}]},
        headers=operator_headers,
    )
    assert missing.status_code == 422
    # the customer's dashboard: the invoice with its tax and credit note, PDFs, credits page
    sign_in(client, a.key)
    page = client.get(f"/dashboard/invoices/{invoice.id}")
    assert page.status_code == 200 and invoice.number in page.text
    assert "CN-2026-000001" in page.text and 'id="invoice-tax"' in page.text
    pdf = client.get(f"/dashboard/invoices/{invoice.id}/pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert client.get(f"/dashboard/credit-notes/{note_id}/pdf").status_code == 200
    assert "CN-2026-000001" in client.get("/dashboard/service-credits").text
    sign_in(client, b.key)
    assert client.get(f"/dashboard/invoices/{invoice.id}/pdf").status_code == 404
    assert "CN-2026-000001" not in client.get("/dashboard/service-credits").text
