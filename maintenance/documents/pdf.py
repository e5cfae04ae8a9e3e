"""PDF documents with fpdf2 (pure Python): invoices, credit notes, value reports.

The font is DejaVu Sans from matplotlib's bundled data (a dependency already), so any
Unicode text prints and no system package is needed. No SQL, no HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.enums import XPos, YPos

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@dataclass(frozen=True)
class Column:
    title: str
    width: float  # mm
    align: str = "L"  # "L" | "R"


@dataclass
class Document:
    """What a PDF shows: a title block, two parties, a table, totals and notes."""

    title: str
    facts: list[tuple[str, str]]  # (label, value) under the title: number, dates, period
    seller: list[str]
    buyer: list[str]
    columns: list[Column]
    rows: list[list[str]]
    totals: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)


def money(minor: int, currency: str) -> str:
    """Minor units as '1,234.56 EUR'."""
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100:,}.{abs(minor) % 100:02d} {currency}"


class _Pdf(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.footer_text = footer_text
        self.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(15, 15, 15)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("DejaVu", "", 7)
        self.cell(0, 5, f"{self.footer_text} · page {self.page_no()}/{{nb}}", align="C")


def _lines(pdf: _Pdf, lines: Sequence[str], x: float, width: float, bold_first: bool) -> float:
    y = pdf.get_y()
    for i, text in enumerate(lines):
        pdf.set_xy(x, y)
        pdf.set_font("DejaVu", "B" if bold_first and i == 0 else "", 9)
        pdf.multi_cell(width, 4.5, text, new_x=XPos.LEFT, new_y=YPos.NEXT)
        y = pdf.get_y()
    return y


def render(doc: Document) -> bytes:
    """The document as PDF bytes."""
    pdf = _Pdf(f"{doc.title} {doc.facts[0][1] if doc.facts else ''}".strip())
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 16)
    pdf.cell(0, 9, doc.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("DejaVu", "", 9)
    for label, value in doc.facts:
        pdf.cell(40, 5, label)
        pdf.cell(0, 5, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    top = pdf.get_y()
    pdf.set_font("DejaVu", "B", 8)
    pdf.cell(90, 5, "From")
    pdf.cell(0, 5, "To", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    start = pdf.get_y()
    left_end = _lines(pdf, doc.seller, 15, 85, True)
    pdf.set_y(start)
    right_end = _lines(pdf, doc.buyer, 105, 90, True)
    pdf.set_y(max(left_end, right_end, top) + 4)
    for title, facts in doc.sections:
        pdf.set_font("DejaVu", "B", 11)
        pdf.cell(0, 7, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("DejaVu", "", 9)
        for label, value in facts:
            pdf.multi_cell(0, 5, f"{label}: {value}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
    if doc.columns:
        _table(pdf, doc.columns, doc.rows)
    if doc.totals:
        pdf.ln(2)
        for label, value in doc.totals:
            pdf.set_font("DejaVu", "B" if label.lower().startswith("total") else "", 9)
            pdf.cell(140, 5.5, label, align="R")
            pdf.cell(0, 5.5, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if doc.notes:
        pdf.ln(3)
        pdf.set_font("DejaVu", "", 8)
        for note in doc.notes:
            pdf.multi_cell(0, 4.5, note, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


def _table(pdf: _Pdf, columns: list[Column], rows: list[list[str]]) -> None:
    pdf.set_font("DejaVu", "B", 8)
    pdf.set_fill_color(235, 235, 235)
    for col in columns:
        pdf.cell(col.width, 6, col.title, border="B", align=col.align, fill=True)
    pdf.ln()
    pdf.set_font("DejaVu", "", 8)
    for row in rows:
        heights = [
            len(_wrapped(pdf, col.width, text)) * 4 for col, text in zip(columns, row, strict=True)
        ]
        height = max(heights) + 1
        if pdf.get_y() + height > pdf.h - 20:
            pdf.add_page()
        y, x = pdf.get_y(), pdf.l_margin
        for col, text in zip(columns, row, strict=True):
            pdf.set_xy(x, y)
            pdf.multi_cell(col.width, 4, text, align=col.align)
            x += col.width
        pdf.set_xy(pdf.l_margin, y + height)
        pdf.line(pdf.l_margin, y + height, pdf.w - pdf.r_margin, y + height)


def _wrapped(pdf: _Pdf, width: float, text: str) -> list[str]:
    """The lines ``text`` takes in a cell of ``width`` (a dry run)."""
    result = pdf.multi_cell(width, 4, text, dry_run=True, output="LINES")
    assert isinstance(result, list)
    return result
