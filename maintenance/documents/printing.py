"""Invoices and credit notes as printable documents (fed to ``pdf.render``). No SQL, no HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from maintenance.billing.schemas import InvoiceDetail, InvoiceLine
from maintenance.documents.pdf import Column, Document, money
from maintenance.documents.schemas import CreditNoteDetail
from maintenance.documents.tax import format_rate

LINE_COLUMNS = [
    Column("#", 8),
    Column("Description", 78),
    Column("Quantity", 24, "R"),
    Column("Net", 26, "R"),
    Column("VAT", 14, "R"),
    Column("Tax", 30, "R"),
]
CATEGORY_LABEL = {
    "standard": "",
    "reverse_charge": "RC",
    "outside_scope": "n/a",
    "untaxed": "-",
}


def party_lines(party: dict[str, Any] | None) -> list[str]:
    """A party's legal details, one per printed line."""
    if not party:
        return ["(not recorded)"]
    lines = [str(party.get("legal_name", ""))]
    lines += [part for part in str(party.get("address") or "").splitlines() if part.strip()]
    lines.append(f"Country: {party.get('country', '')}")
    if party.get("vat_id"):
        lines.append(f"VAT id: {party['vat_id']}")
    if party.get("email"):
        lines.append(str(party["email"]))
    return lines


def _day(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d}"


def _rate(category: str, rate_bps: int) -> str:
    label = CATEGORY_LABEL.get(category, category)
    return label if label else format_rate(rate_bps)


def _tax_summary(rows: list[tuple[str, int, int, int]], currency: str) -> list[tuple[str, str]]:
    """Net and tax per (category, rate): (category, rate, net, tax) rows."""
    groups: dict[tuple[str, int], list[int]] = {}
    for category, rate, net, tax in rows:
        group = groups.setdefault((category, rate), [0, 0])
        group[0] += net
        group[1] += tax
    return [
        (f"VAT {_rate(c, r)} on {money(net, currency)}", money(tax, currency))
        for (c, r), (net, tax) in sorted(groups.items())
    ]


def _line_row(n: int, line: InvoiceLine, currency: str) -> list[str]:
    return [
        str(n),
        line.description,
        f"{line.quantity.normalize():f} {line.unit}",
        money(line.amount_minor, currency),
        _rate(line.tax_category, line.tax_rate_bps),
        money(line.tax_minor, currency),
    ]


def invoice_document(
    invoice: InvoiceDetail, draft_parties: tuple[dict[str, Any], ...], replaces: str | None = None
) -> Document:
    """An invoice as a document. ``draft_parties``: (seller, buyer) to show on a draft, which
    has no stored copy yet; ``replaces``: the number of the invoice it replaces (a void one)
    or supplements (a corrected one)."""
    seller = invoice.seller or draft_parties[0]
    buyer = invoice.buyer or draft_parties[1]
    title = "Invoice" if invoice.number else "Draft invoice (not a tax document)"
    facts = [
        ("Number", invoice.number or "(given when issued)"),
        ("Date of issue", _day(invoice.issued_at)),
        ("Service period", f"{invoice.period} ({_day(invoice.period_start)} to "
                           f"{_day(invoice.period_end)}, end exclusive)"),
        ("Status", str(invoice.status)),
    ]  # fmt: skip
    if replaces is not None:
        what = "Supplements" if invoice.rebills_credit_note_id is not None else "Replaces"
        facts.append((what, f"invoice {replaces}"))
    cur = invoice.currency
    notes = [str(buyer.get("tax_note"))] if buyer and buyer.get("tax_note") else []
    if invoice.void_reason:
        notes.append(f"Voided: {invoice.void_reason}")
    return Document(
        title=title,
        facts=facts,
        seller=party_lines(seller),
        buyer=party_lines(buyer),
        columns=LINE_COLUMNS,
        rows=[_line_row(line.line_no, line, cur) for line in invoice.lines],
        totals=[
            ("Net total", money(invoice.total_minor, cur)),
            *_tax_summary(
                [
                    (x.tax_category, x.tax_rate_bps, x.amount_minor, x.tax_minor)
                    for x in invoice.lines
                ],
                cur,
            ),
            ("Tax total", money(invoice.tax_minor, cur)),
            ("Total due", money(invoice.total_minor + invoice.tax_minor, cur)),
        ],
        notes=notes,
    )


def credit_note_document(note: CreditNoteDetail, invoice_number: str | None) -> Document:
    """A credit note as a document."""
    cur = note.currency
    rows = [
        [
            str(line.line_no),
            line.description,
            "",
            money(line.amount_minor, cur),
            _rate(line.tax_category, line.tax_rate_bps),
            money(line.tax_minor, cur),
        ]
        for line in note.lines
    ]
    buyer = note.buyer.model_dump()
    return Document(
        title="Credit note",
        facts=[
            ("Number", note.number),
            ("Date of issue", _day(note.issued_at)),
            ("Credits invoice", invoice_number or str(note.invoice_id)),
            ("Kind", note.kind),
            ("Reason", note.reason),
        ],
        seller=party_lines(note.seller.model_dump()),
        buyer=party_lines(buyer),
        columns=LINE_COLUMNS,
        rows=rows,
        totals=[
            ("Net credited", money(note.total_minor, cur)),
            *_tax_summary(
                [(x.tax_category, x.tax_rate_bps, x.amount_minor, x.tax_minor) for x in note.lines],
                cur,
            ),
            ("Tax credited", money(note.tax_minor, cur)),
            ("Total credited", money(note.total_minor + note.tax_minor, cur)),
        ],
        notes=[str(buyer["tax_note"])] if buyer.get("tax_note") else [],
    )
