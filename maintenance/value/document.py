"""The value report as a printable document (fed to ``documents.pdf.render``). No SQL."""

from __future__ import annotations

from maintenance.documents.pdf import Column, Document, money
from maintenance.value.schemas import ValueReport


def value_document(report: ValueReport, seller: list[str]) -> Document:
    """A customer's value report of a month as a document."""
    eur = "EUR"
    facts = [
        ("Month", report.period),
        ("Failures prevented", str(report.failures_prevented)),
        ("Failures not prevented", str(report.failures_not_prevented)),
        ("Downtime avoided", f"{report.downtime_avoided_h:g} h"),
        ("Saved vs run to failure", money(round(report.saved_vs_run_to_failure_eur * 100), eur)),
        ("Saved vs preventive", money(round(report.saved_vs_preventive_eur * 100), eur)),
    ]
    ship = report.shipments
    credits = report.service_credits
    sections = [
        (
            "Parts and credits",
            [
                ("Shipments delivered", f"{ship.delivered} ({ship.parts} parts)"),
                ("On time", f"{ship.on_time}; late: {ship.late}"),
                ("Service credits earned", f"{credits.count} ({credits.pending} pending)"),
                ("Credited so far", money(credits.applied_minor, credits.currency)),
            ],
        ),
        (
            "Cost assumptions (as fleetcare evaluate)",
            [
                (
                    a.kind,
                    f"a failure stops the asset {a.failure_downtime_h:g} h at"
                    f" {a.downtime_eur_per_hour:g} EUR/h; labour {a.labour_eur_per_hour:g} EUR/h;"
                    " preventive interval "
                    + (
                        f"{a.preventive_interval_days:g} days"
                        if a.preventive_interval_days is not None
                        else "not known yet"
                    )
                    + f" ({a.recorded_lives} recorded lives). {a.note}",
                )
                for a in report.assumptions
            ],
        ),
    ]
    if report.advice is not None:
        advice_lines = []
        for sub in report.advice.subscriptions:
            best = next((o for o in sub.options if o.plan_id == sub.best_plan_id), None)
            text = f"now {money(sub.current_cost_minor, report.advice.currency)}"
            if best is not None:
                text += (
                    f"; cheapest: {best.plan_name} at {money(best.cost_minor, best.currency)}"
                    f" (saving {money(best.saving_minor, best.currency)})"
                )
            advice_lines.append((f"Subscription {sub.subscription_id}", text))
        sections.append(
            (f"Plan advice ({', '.join(report.advice.periods)})", advice_lines or [("-", "-")])
        )
    rows = [
        [
            "prevented",
            f"{p.asset_ref} {p.component}",
            p.completed_at[:10],
            f"{p.saved_vs_run_to_failure_eur or 0:,.2f}",
            "-" if p.saved_vs_preventive_eur is None else f"{p.saved_vs_preventive_eur:,.2f}",
        ]
        for p in report.prevented
    ] + [
        [
            "failed",
            f"{f.asset_ref} {f.component}",
            f.failed_at[:10],
            "-",
            "-",
        ]
        for f in report.not_prevented
    ]
    return Document(
        title="Value report",
        facts=facts,
        seller=seller,
        buyer=[report.customer_name, f"Customer {report.customer_id}"],
        columns=[
            Column("What", 24),
            Column("Asset", 56),
            Column("Date", 26),
            Column("Saved vs RTF (EUR)", 37, "R"),
            Column("vs preventive (EUR)", 37, "R"),
        ],
        rows=rows,
        sections=sections,
        notes=report.notes,
    )
