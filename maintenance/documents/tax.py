"""Tax rules, pure: which rate a line gets, from the seller's and the buyer's details.

- Buyer in the seller's country: that country's rate for the buyer's type (domestic).
- Seller and buyer in two EU member states, buyer a business with a VAT id: reverse charge
  (0 %, the buyer accounts for the VAT: Art. 196 of Directive 2006/112/EC).
- Buyer in another EU member state without a VAT id (a consumer, or a business that gave
  none): the buyer country's rate (place of supply where the customer is).
- Any other cross-border sale (a party outside the EU, e.g. a buyer in GB, CH, NO or the
  US): an export of services, outside the scope of the seller's VAT (0 %, Art. 44 and 59 of
  the Directive for a seller in the EU); the buyer accounts for any tax due where it is.
- A buyer (or seller) country with no rate valid on the tax date has no known rule: an
  ``Invalid`` error naming it (``no_tax_rule``), never a guess.

Rates are data: ``tax_rates`` rows with effective dates (migrations 0050, 0101). The tax date
of an invoice is the last moment of its period.

Tax is computed per line, exactly, and rounded once to minor units (half to even), like the
amounts; an invoice's tax is the sum of its lines' tax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from fleetcare.errors import Invalid

# The format of a VAT identification number per EU member state (the VIES formats), after the
# two-letter prefix. Greece's prefix is EL, not its ISO code GR.
VAT_FORMATS: dict[str, str] = {
    "AT": r"U\d{8}",
    "BE": r"[01]\d{9}",
    "BG": r"\d{9,10}",
    "CY": r"\d{8}[A-Z]",
    "CZ": r"\d{8,10}",
    "DE": r"\d{9}",
    "DK": r"\d{8}",
    "EE": r"\d{9}",
    "EL": r"\d{9}",
    "ES": r"[0-9A-Z]\d{7}[0-9A-Z]",
    "FI": r"\d{8}",
    "FR": r"[0-9A-HJ-NP-Z]{2}\d{9}",
    "HR": r"\d{11}",
    "HU": r"\d{8}",
    "IE": r"\d{7}[A-W][A-I]?|\d[A-Z+*]\d{5}[A-W]",
    "IT": r"\d{11}",
    "LT": r"\d{9}|\d{12}",
    "LU": r"\d{8}",
    "LV": r"\d{11}",
    "MT": r"\d{8}",
    "NL": r"\d{9}B\d{2}",
    "PL": r"\d{10}",
    "PT": r"\d{9}",
    "RO": r"[1-9]\d{1,9}",
    "SE": r"\d{12}",
    "SI": r"\d{8}",
    "SK": r"\d{10}",
}
REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Directive 2006/112/EC)"
)
OUTSIDE_SCOPE_NOTE = "Not subject to VAT in the seller's country (place of supply abroad)"
EXPORT_NOTE = (
    "Export of services: outside the scope of EU VAT (place of supply {country},"
    " Art. 44/59 Directive 2006/112/EC); the customer accounts for any tax due there"
)


@dataclass(frozen=True)
class Rate:
    """A country's rate for one customer type on the tax date."""

    rate_bps: int
    eu: bool
    regime: str = "vat"  # 'vat' | 'none' (no VAT on services, e.g. US)


Rates = dict[tuple[str, str], Rate]


def no_rule(country: str, role: str, rates: Rates) -> Invalid:
    """The error for a country without a known tax rule."""
    known = ", ".join(sorted({c for c, _ in rates}))
    return Invalid(
        f"no tax rule for the {role}'s country {country!r} (known: {known}); add its rates"
        " (tax_rates) before invoicing it",
        code="no_tax_rule",
    )


def vat_prefix(country: str) -> str:
    """The VAT id prefix of an EU country (Greece: EL)."""
    return "EL" if country == "GR" else country


def check_vat_id(vat_id: str, country: str) -> str:
    """The VAT id normalised (upper case, no spaces, dots or dashes); ValueError when its
    format does not match the country's, or its prefix is another country's."""
    normal = re.sub(r"[\s.\-]", "", vat_id).upper()
    prefix = vat_prefix(country)
    if not normal.startswith(prefix):
        raise ValueError(f"a VAT id of {country} starts with {prefix} (got {vat_id!r})")
    pattern = VAT_FORMATS.get(prefix)
    if pattern is None:
        if not re.fullmatch(r"[0-9A-Z]{2,13}", normal[2:]):
            raise ValueError(f"VAT id {vat_id!r} is not 2 to 13 letters or digits after {prefix}")
        return normal
    if not re.fullmatch(pattern, normal[2:]):
        raise ValueError(f"VAT id {vat_id!r} does not have the format of {country}")
    return normal


@dataclass(frozen=True)
class Buyer:
    """What tax needs to know of the buyer."""

    country: str
    customer_type: str  # 'business' | 'consumer'
    vat_id: str | None


@dataclass(frozen=True)
class TaxDecision:
    """The tax treatment of every line of one document."""

    category: str  # 'standard' | 'reverse_charge' | 'outside_scope'
    rate_bps: int
    note: str


def decide(seller_country: str, buyer: Buyer, rates: Rates) -> TaxDecision:
    """The tax treatment of a sale; ``rates``: (country, type) -> its rate on the tax date.
    A country without a rate is refused (``no_tax_rule``)."""
    seller = rates.get((seller_country, buyer.customer_type))
    if seller is None:
        raise no_rule(seller_country, "seller", rates)
    own = rates.get((buyer.country, buyer.customer_type))
    if own is None:
        raise no_rule(buyer.country, "buyer", rates)
    if buyer.country == seller_country:
        if own.regime == "none":
            return TaxDecision("outside_scope", 0, f"No VAT in {buyer.country}")
        return TaxDecision("standard", own.rate_bps, f"VAT {format_rate(own.rate_bps)}")
    if seller.eu and own.eu:
        if buyer.customer_type == "business" and buyer.vat_id:
            return TaxDecision("reverse_charge", 0, REVERSE_CHARGE_NOTE)
        rate = rates[(buyer.country, "consumer")].rate_bps
        return TaxDecision("standard", rate, f"VAT {buyer.country} {format_rate(rate)}")
    if seller.eu:
        return TaxDecision("outside_scope", 0, EXPORT_NOTE.format(country=buyer.country))
    return TaxDecision("outside_scope", 0, OUTSIDE_SCOPE_NOTE)


def format_rate(rate_bps: int) -> str:
    """1900 as '19 %', 2550 as '25.5 %'."""
    return f"{Decimal(rate_bps) / 100:f}".rstrip("0").rstrip(".") + " %"


def line_tax(amount_minor: int, rate_bps: int) -> int:
    """The tax of one line: exact, rounded once to minor units, half to even."""
    exact = Decimal(amount_minor) * rate_bps / 10_000
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
