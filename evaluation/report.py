"""The report of `fleetcare evaluate`: a text table and a PNG chart of the figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluation.strategies import STRATEGIES

SWEEPS = (
    ("validation fleet", "validation_sweep"),
    ("evaluation fleet (not used to choose)", "evaluation_sweep"),
)


def format_table(figures: dict[str, Any]) -> str:
    """The per-kind, per-strategy figures as a text table."""
    head = (
        f"{'kind':<9}{'strategy':<16}{'failures':>9}{'faults':>7}{'planned':>8}{'orders':>7}"
        f"{'wasted/repl.':>15}{'wasted':>8}{'parts+labour €':>16}{'downtime €':>13}"
        f"{'total €':>13}"
    )
    lines = [head, "-" * len(head)]
    for kind, k in figures["kinds"].items():
        for strategy in STRATEGIES:
            s = k["strategies"][strategy]
            faults = s["failures_random_fault"]
            wasted = f"{s['mean_wasted_life']:,.0f} {s['life_unit']}"
            lines.append(
                f"{kind:<9}{strategy:<16}{s['failures']:>9}{faults:>7}"
                f"{s['planned_replacements']:>8}{s['orders_raised']:>7}{wasted:>15}"
                f"{s['wasted_share_of_life']:>8.1%}{s['parts_eur'] + s['labour_eur']:>16,.0f}"
                f"{s['downtime_eur']:>13,.0f}{s['total_eur']:>13,.0f}"
            )
        lines.extend(verdict_lines(k))
        lines.append(f"{'':<9}coverage {coverage_text(k['coverage'])} ({k['coverage_chosen_on']})")
        chosen = k.get("coverage_on_validation")
        if chosen:
            lines.append(
                f"{'':<9}chosen coverage on the validation fleet (per component, summed): "
                f"{chosen['failures']}/{chosen['failures_run_to_failure']} fail "
                f"({chosen['failures_random_fault']} random faults), waste ratio "
                f"{_ratio(chosen['waste_vs_preventive'])}"
            )
        for label, key in SWEEPS:
            if k.get(key):
                lines.append(
                    f"{'':<9}{label}: "
                    + "; ".join(
                        f"{p['coverage']}: {p['failures']}/{p['failures_run_to_failure']} fail "
                        f"({p['failures_random_fault']} random faults), "
                        f"{p['wasted_share_of_life']:.1%} wasted, "
                        f"waste ratio {_ratio(p['waste_vs_preventive'])}"
                        for p in k[key]
                    )
                )
    return "\n".join(lines)


def verdict_lines(k: dict[str, Any]) -> list[str]:
    """The verdict of one kind: the target on foreseeable failures, then random faults apart
    and the same target on every failure."""
    pred = k["strategies"]["predictive"]
    ratio = k["predictive_waste_vs_preventive"]
    faults = k["random_fault_failures"]
    met = "met" if k["target_met_foreseeable"] else "NOT met"
    return [
        f"{'':<9}target (>= 95% prevented, <= 0.33 of preventive's waste) on foreseeable "
        f"failures: {met} — {_share(k['predictive_prevented_share_foreseeable'])} prevented "
        f"({pred['failures_foreseeable']} left), waste {_ratio(ratio)}",
        f"{'':<9}random faults, apart (no precursor, no model can time them): predictive "
        f"{faults['predictive']}, run to failure {faults['run_to_failure']}, preventive "
        f"{faults['preventive']}; on all failures with them: "
        f"{_share(k['predictive_prevented_share_all_failures'])} prevented, target "
        + ("met" if k["target_met_all_failures"] else "NOT met"),
    ]


def coverage_text(coverage: dict[str, float]) -> str:
    """The coverage per component; one figure when every component has the same."""
    values = set(coverage.values())
    if len(values) == 1:
        return f"{values.pop():g}"
    return ", ".join(f"{c} {v:g}" for c, v in coverage.items())


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def write_chart(figures: dict[str, Any], path: Any) -> None:
    """A PNG: failures, wasted life and cost per kind and strategy; the coverage trade-off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(figures["kinds"])
    colours = {"run_to_failure": "#c0392b", "preventive": "#7f8c8d", "predictive": "#2471a3"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    x = np.arange(len(kinds))
    width = 0.27
    panels = (
        (axes[0, 0], "failures", "unplanned failures in the period", 1.0),
        (axes[0, 1], "wasted_share_of_life", "life thrown away at replacement (%)", 100.0),
        (axes[1, 0], "total_eur", "parts + labour + downtime (k€, log)", 0.001),
    )
    for ax, key, title, scale in panels:
        for j, strategy in enumerate(STRATEGIES):
            values = [figures["kinds"][k]["strategies"][strategy][key] * scale for k in kinds]
            ax.bar(x + (j - 1) * width, values, width, label=strategy.replace("_", " "),
                   color=colours[strategy])  # fmt: skip
        ax.set_xticks(x, kinds)
        ax.set_title(title)
        if key == "total_eur":
            ax.set_yscale("log")
    axes[0, 0].legend()
    ax = axes[1, 1]
    for kind in kinds:
        k = figures["kinds"][kind]
        points = [p for p in k["validation_sweep"] if p["prevented_share"] is not None]
        if points:
            xs = [100 * p["wasted_share_of_life"] for p in points]
            ys = [100 * p["prevented_share"] for p in points]
            (line,) = ax.plot(xs, ys, marker="o", label=f"{kind} predictive")
            for p, xv, yv in zip(points, xs, ys, strict=True):
                ax.annotate(f"{p['coverage']:g}", (xv, yv), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")  # fmt: skip
            prev = points[0]
            if prev["preventive_prevented_share"] is not None:
                ax.scatter([100 * prev["preventive_wasted_share_of_life"]],
                           [100 * prev["preventive_prevented_share"]], marker="s",
                           color=line.get_color(), label=f"{kind} preventive")  # fmt: skip
    ax.axhline(95, color="black", lw=0.8, ls="--")
    ax.set_xlabel("life thrown away (%)")
    ax.set_ylabel("failures prevented vs run-to-failure (%)")
    ax.set_title("validation fleet: coverage of the conservative due date")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.suptitle(
        f"fleetcare evaluate: seed {figures['seed']}, {figures['days']:g} days, "
        f"~{figures['assets_per_kind']} assets per kind; coverage "
        + "; ".join(f"{k} {coverage_text(v['coverage'])}" for k, v in figures["kinds"].items())
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
