"""What a strategy costs per kind: the planning and cost assumptions of `fleetcare evaluate`,
shared with the customers' value reports (maintenance/value), so both state the same costs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindEconomics:
    """Assumptions per kind: planning, costs of labour and of an unplanned failure."""

    per_group: int  # assets per truck / building / aircraft
    step_h: float  # one reading per asset per step (engines: per flight cycle)
    order_lead_days: int  # the plan's lead time
    shipping_days: int  # from the nearest depot
    labour_eur_per_hour: float
    failure_downtime_h: float  # an unplanned failure takes the asset out this long
    downtime_eur_per_hour: float
    max_rul: float  # RUL cap of the wear model (as the product's training defaults)
    risk_threshold: float  # the kind's full-service plan (the demo's, cli/demo.py)
    history_max_days: float  # the training fleet stops here even if some never failed
    note: str


# A preventive programme replaces a component at the usage (here: the age) by which this share
# of the recorded lives had failed.
PREVENTIVE_QUANTILE = 0.05

ECONOMICS: dict[str, KindEconomics] = {
    "tire": KindEconomics(
        per_group=6, step_h=6.0, order_lead_days=2, shipping_days=1,
        labour_eur_per_hour=80.0, failure_downtime_h=8.0, downtime_eur_per_hour=150.0,
        max_rul=80_000.0, risk_threshold=0.4, history_max_days=1_100.0,
        note="a failed tire stops its truck 8 h (road-side call-out, missed deliveries)",
    ),
    "elevator": KindEconomics(
        per_group=3, step_h=12.0, order_lead_days=5, shipping_days=2,
        labour_eur_per_hour=110.0, failure_downtime_h=36.0, downtime_eur_per_hour=60.0,
        max_rul=150_000.0, risk_threshold=0.4, history_max_days=1_500.0,
        note="a failed door operator or brake stops the elevator 36 h (call-out, rush part)",
    ),
    "engine": KindEconomics(
        per_group=2, step_h=6.0, order_lead_days=5, shipping_days=2,
        labour_eur_per_hour=150.0, failure_downtime_h=48.0, downtime_eur_per_hour=5_000.0,
        max_rul=125.0, risk_threshold=0.3, history_max_days=400.0,
        note="an engine failure grounds the aircraft 48 h (AOG: lost flights, spare lease)",
    ),
}  # fmt: skip
