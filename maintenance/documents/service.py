"""Invoice documents: numbers, the parties' legal details, tax, credit notes, service credits.

No SQL text, no HTTP. Callers own the transaction. See docs/billing.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from fleet.schemas import Principal
from fleetcare.clock import Clock
from fleetcare.errors import Conflict, Invalid, NotFound
from maintenance.billing import repository as billing_repo
from maintenance.billing.schemas import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineDraft,
    rebill_key,
    rebillable,
)
from maintenance.common import Conn, subject
from maintenance.documents import repository as repo
from maintenance.documents.schemas import (
    BillingProfile,
    BillingProfileUpdate,
    CorrectionRequest,
    CreditNote,
    CreditNoteDetail,
    Party,
    SellerProfile,
    SellerUpdate,
    ServiceCredit,
    TaxRate,
)
from maintenance.documents.tax import Buyer, TaxDecision, decide, line_tax, no_rule
from maintenance.events.service import emit

SERIES_PREFIX = {"invoice": "INV", "credit_note": "CN"}


def document_number(conn: Conn, series: str, when: datetime) -> str:
    """The next gap-free number of ``series`` in the year of ``when`` (``INV-2026-000001``)."""
    value = repo.next_number(conn, series, when.year)
    return f"{SERIES_PREFIX[series]}-{when.year}-{value:06d}"


# --- parties and tax -----------------------------------------------------------------------


def tax_date(period_end: datetime) -> date:
    """The tax point of an invoice: the last day of its period."""
    return (period_end - timedelta(microseconds=1)).date()


def parties(conn: Conn, customer_id: int, on: date) -> tuple[Party, Party, TaxDecision]:
    """The seller, the buyer (the customer's billing profile, or its name as a consumer in the
    seller's country) and the tax treatment of a sale between them with the rates valid on
    ``on`` (``no_tax_rule`` when a country has none)."""
    seller = repo.seller(conn)
    profile = repo.billing_profile(conn, customer_id)
    if profile is None:
        name = repo.customer_name(conn, customer_id)
        if name is None:
            raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
        buyer = Party(legal_name=name, country=seller.country, customer_type="consumer")
    else:
        buyer = Party(
            legal_name=profile.legal_name,
            address=profile.address,
            country=profile.country,
            vat_id=profile.vat_id,
            customer_type=profile.customer_type,
        )
    decision = decide(
        seller.country,
        Buyer(buyer.country, buyer.customer_type or "consumer", buyer.vat_id),
        repo.tax_rates(conn, on),
    )
    return seller_party(seller), buyer, decision


def seller_party(seller: SellerProfile) -> Party:
    """The seller's legal details as a party of a document."""
    return Party(
        legal_name=seller.legal_name,
        address=seller.address,
        country=seller.country,
        vat_id=seller.vat_id,
        email=seller.email,
    )


def with_tax(lines: list[LineDraft], decision: TaxDecision) -> list[LineDraft]:
    """The lines with their tax category, rate and amount (rounded once per line)."""
    return [
        replace(
            line,
            tax_category=decision.category,
            tax_rate_bps=decision.rate_bps,
            tax_minor=line_tax(line.amount_minor, decision.rate_bps),
        )
        for line in lines
    ]


def party_json(party: Party, decision: TaxDecision | None = None) -> dict[str, Any]:
    """A party as stored on a document (the buyer also carries the tax note)."""
    data = party.model_dump(mode="json")
    if decision is not None:
        data["tax_note"] = decision.note
        data["tax_category"] = decision.category
    return data


def stamp_issued(conn: Conn, invoice: Invoice, now: datetime) -> dict[str, Any]:
    """On issue: the invoice's number and its parties as of now (set by the caller)."""
    seller, buyer, decision = parties(conn, invoice.customer_id, tax_date(invoice.period_end))
    return {
        "number": document_number(conn, "invoice", now),
        "seller": repo.as_json(party_json(seller)),
        "buyer": repo.as_json(party_json(buyer, decision)),
    }


def get_seller(conn: Conn, principal: Principal) -> SellerProfile:
    """The seller's legal details (any customer-side caller may read them)."""
    principal.require("billing:read")
    return repo.seller(conn)


def set_seller(conn: Conn, principal: Principal, body: SellerUpdate, clock: Clock) -> SellerProfile:
    """Replace the seller's legal details (operator); issued documents keep their copy."""
    principal.require("billing:write")
    _check_country(conn, body.country, "seller", clock.now().date())
    return repo.set_seller(conn, body.model_dump(), clock.now())


def _own_customer(principal: Principal, customer_id: int) -> None:
    principal.require("billing:read")
    if principal.scope is not None and principal.scope != customer_id:
        raise NotFound(f"customer {customer_id} not found", code="customer_not_found")


def get_billing_profile(conn: Conn, principal: Principal, customer_id: int) -> BillingProfile:
    """A customer's legal details for invoices (its own, or any for the operator)."""
    _own_customer(principal, customer_id)
    profile = repo.billing_profile(conn, customer_id)
    if profile is None:
        raise NotFound(
            f"customer {customer_id} has no billing profile", code="billing_profile_not_found"
        )
    return profile


def set_billing_profile(
    conn: Conn, principal: Principal, customer_id: int, body: BillingProfileUpdate, clock: Clock
) -> BillingProfile:
    """Create or replace a customer's legal details (the customer itself or the operator).
    The VAT id's format was checked against the country; issued documents keep their copy."""
    _own_customer(principal, customer_id)
    if repo.customer_name(conn, customer_id) is None:
        raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
    _check_country(conn, body.country, "buyer", clock.now().date())
    return repo.set_billing_profile(conn, customer_id, body.model_dump(), clock.now())


def _check_country(conn: Conn, country: str, role: str, on: date) -> None:
    """Refuse a country that has no tax rule (rather than invoice it at a guessed rate)."""
    rates = repo.tax_rates(conn, on)
    if not any(c == country for c, _ in rates):
        raise no_rule(country, role, rates)


def list_tax_rates(conn: Conn, principal: Principal) -> list[TaxRate]:
    """Every tax rate by country, customer type and effective date."""
    principal.require("billing:read")
    return repo.all_tax_rates(conn)


# --- credit notes --------------------------------------------------------------------------


def _credit_line(line: InvoiceLine, amount: int, n: int) -> dict[str, Any]:
    return {
        "line_no": n,
        "invoice_line_id": line.id,
        "description": f"Credit of line {line.line_no}: {line.description}",
        "amount_minor": amount,
        "tax_category": line.tax_category,
        "tax_rate_bps": line.tax_rate_bps,
        # the line's tax in full when the whole (rest of the) line is credited, so a void
        # reverses exactly the invoice's tax; a share otherwise
        "tax_minor": line.tax_minor
        if amount == line.amount_minor
        else line_tax(amount, line.tax_rate_bps),
    }


def issue_credit_note(
    conn: Conn,
    invoice: Invoice,
    kind: str,
    reason: str,
    amounts: dict[int, int],
    now: datetime,
    *,
    rebill: bool = False,
) -> CreditNoteDetail:
    """Issue a credit note for ``amounts`` (invoice line id -> amount) of an issued invoice;
    emits ``credit_note.issued``. The invoice itself is never changed."""
    lines = {line.id: line for line in billing_repo.invoice_lines(conn, invoice.id)}
    rows = [
        _credit_line(lines[line_id], amount, n)
        for n, (line_id, amount) in enumerate(
            sorted(amounts.items(), key=lambda kv: lines[kv[0]].line_no), start=1
        )
        if amount != 0
    ]
    if not rows:
        raise Invalid("nothing to credit: every amount is 0", code="nothing_to_credit")
    seller = invoice.seller or {}
    buyer = invoice.buyer or {}
    note_id = repo.insert_credit_note(
        conn,
        {
            "customer_id": invoice.customer_id,
            "invoice_id": invoice.id,
            "number": document_number(conn, "credit_note", now),
            "kind": kind,
            "reason": reason,
            "currency": invoice.currency,
            "total_minor": sum(r["amount_minor"] for r in rows),
            "tax_minor": sum(r["tax_minor"] for r in rows),
            "line_count": len(rows),
            "seller": seller,
            "buyer": buyer,
            "issued_at": now,
            "rebill": rebill,
        },
        rows,
    )
    detail = _detail(conn, note_id, None)
    emit(
        conn,
        "credit_note.issued",
        {"credit_note": detail.model_dump(mode="json"), "invoice_number": invoice.number},
        customer_id=invoice.customer_id,
        subject=subject("credit_note", note_id),
        occurred_at=now,
    )
    return detail


def credit_remaining(conn: Conn, invoice: Invoice, reason: str, now: datetime) -> CreditNote:
    """A void: credit what remains of every line of an issued invoice."""
    credited = repo.credited_per_line(conn, invoice.id)
    amounts = {
        line.id: line.amount_minor - credited.get(line.id, 0)
        for line in billing_repo.invoice_lines(conn, invoice.id)
    }
    return issue_credit_note(conn, invoice, "void", reason, amounts, now)


def correct_invoice(
    conn: Conn, principal: Principal, invoice_id: int, body: CorrectionRequest, clock: Clock
) -> CreditNoteDetail:
    """Credit part of an issued (or paid) invoice's lines (operator): a correction."""
    principal.require("billing:write")
    invoice = billing_repo.get_invoice(conn, invoice_id, None, for_update=True)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found", code="invoice_not_found")
    if invoice.status not in (InvoiceStatus.ISSUED, InvoiceStatus.PAID):
        raise Conflict(
            f"invoice {invoice_id} is {invoice.status}; only an issued or paid invoice is"
            " corrected by a credit note (a draft is simply closed again)",
            code="invoice_not_issued",
        )
    lines = {line.line_no: line for line in billing_repo.invoice_lines(conn, invoice.id)}
    credited = repo.credited_per_line(conn, invoice.id)
    amounts: dict[int, int] = {}
    for i, wanted in enumerate(body.lines):
        line = lines.get(wanted.line_no)
        where = f"lines[{i}]"
        if line is None:
            raise Invalid(f"{where}: invoice {invoice_id} has no line {wanted.line_no}")
        if line.id in amounts:
            raise Invalid(f"{where}: line {wanted.line_no} is listed twice")
        left = line.amount_minor - credited.get(line.id, 0)
        amount = left if wanted.amount_minor is None else wanted.amount_minor
        if amount * line.amount_minor < 0 or abs(amount) > abs(left):
            raise Invalid(
                f"{where}: line {wanted.line_no} has {left} left to credit (amount"
                f" {line.amount_minor}); {amount} is not within it",
                code="credit_exceeds_line",
            )
        if body.rebill:
            _check_rebill(where, line, amount, left)
        amounts[line.id] = amount
    if body.rebill:
        _check_rebill_complete(lines.values(), amounts, credited)
    return issue_credit_note(
        conn, invoice, "correction", body.reason, amounts, clock.now(), rebill=body.rebill
    )


def _check_rebill(where: str, line: InvoiceLine, amount: int, left: int) -> None:
    """A re-billing correction credits whole lines of charges a close recomputes."""
    if not rebillable(line):
        raise Invalid(
            f"{where}: line {line.line_no} ({line.kind}"
            f"{', ' + line.contract_charge if line.contract_charge else ''}) is not billed again"
            " by a close (late usage, service credits and fees in advance are settled by later"
            " invoices); correct it without rebill",
            code="line_not_rebillable",
        )
    if amount != left or left == 0:
        raise Invalid(
            f"{where}: a re-billing correction credits line {line.line_no} in full (what is"
            f" left of it: {left}), not {amount}",
            code="rebill_needs_whole_line",
        )


def _check_rebill_complete(
    lines: Iterable[InvoiceLine], amounts: dict[int, int], credited: dict[int, int]
) -> None:
    """Every line charging for the same thing as a re-billed one is credited with it (the
    close recomputes them together)."""
    keys = {rebill_key(line) for line in lines if line.id in amounts}
    missing = [
        line.line_no
        for line in lines
        if rebill_key(line) in keys
        and line.id not in amounts
        and line.amount_minor - credited.get(line.id, 0) != 0
    ]
    if missing:
        raise Invalid(
            f"lines {', '.join(map(str, sorted(missing)))} charge for the same thing as lines"
            " re-billed here (same kind, subscription, asset, order and part); list them too",
            code="rebill_incomplete",
        )


def _detail(conn: Conn, note_id: int, scope: int | None) -> CreditNoteDetail:
    note = repo.credit_note(conn, note_id, scope)
    if note is None:
        raise NotFound(f"credit note {note_id} not found", code="credit_note_not_found")
    return CreditNoteDetail(**note.model_dump(), lines=repo.credit_note_lines(conn, note.id))


def get_credit_note(conn: Conn, principal: Principal, note_id: int) -> CreditNoteDetail:
    """One credit note with its lines; another customer's is not found."""
    principal.require("billing:read")
    return _detail(conn, note_id, principal.scope)


def list_credit_notes(
    conn: Conn, principal: Principal, *, invoice_id: int | None, after: int | None, limit: int
) -> tuple[list[CreditNote], int | None]:
    """Credit notes the caller may see."""
    principal.require("billing:read")
    return repo.list_credit_notes(
        conn, scope=principal.scope, invoice_id=invoice_id, after=after, limit=limit
    )


def list_service_credits(
    conn: Conn,
    principal: Principal,
    *,
    period: str | None,
    asset_id: int | None,
    after: int | None,
    limit: int,
) -> tuple[list[ServiceCredit], int | None]:
    """Service credits the caller may see, with the failure each came from."""
    principal.require("billing:read")
    return repo.list_service_credits(
        conn, scope=principal.scope, period=period, asset_id=asset_id, after=after, limit=limit
    )
