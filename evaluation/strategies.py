"""The three strategies of `fleetcare evaluate`: run to failure, a fixed preventive interval,
and fleetcare's predictive policy (the product's decision functions on each prediction)."""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from evaluation.costs import ECONOMICS
from evaluation.fleets import Life, World
from evaluation.wear_model import WearModel
from fleetcare.clock import MAX_DUE_DAYS
from maintenance.plans.schemas import Entitlements
from maintenance.policy import service as policy
from models.schemas import Prediction

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday 00:00: hour 0 of the physics' week
STRATEGIES = ("run_to_failure", "preventive", "predictive")
SCORE_EVERY_H = 24.0
RESCHEDULED = "rescheduled"  # counted beside the triggers: an open order brought forward


@dataclass
class Order:
    raised_h: float
    due_h: float  # the order's due date (brought forward by newer predictions, as the policy does)
    arrival_h: float  # when its part is on site

    @property
    def work_at_h(self) -> float:
        """When the technician does it: due and the part on site."""
        return max(self.due_h, self.arrival_h)


def entitlements(kind: str) -> Entitlements:
    """The plan the predictive strategy runs under: the kind's full-service plan (orders,
    parts and labour included; its failure-risk threshold; no anomaly threshold, as every
    seeded plan) with the lead time of :data:`ECONOMICS`."""
    return Entitlements(
        includes_alerts=True, includes_orders=True, includes_parts=True, includes_labour=True,
        order_lead_days=ECONOMICS[kind].order_lead_days, response_sla_hours=24,
        risk_threshold=ECONOMICS[kind].risk_threshold, anomaly_threshold=None,
    )  # fmt: skip


def at(hours: float) -> datetime:
    """Simulated hours as a date."""
    return START + timedelta(hours=hours)


def predict_live(world: World, model: WearModel, component: str) -> list[Prediction]:
    """Score every live ``component`` as the scoring worker does (the bundle's ``predict`` on
    the features of the life's last row; due dates from the usage rate of the last 7 days);
    ``asset_id`` is the asset's index in the world."""
    now_h, now = world.now_h, at(world.now_h)
    live = np.flatnonzero(~world.population.failed(component))
    mats = []
    for asset in live.tolist():
        got = world.log.life_rows(asset, component, model.head, model.tail)
        if got is None:
            continue
        rows, _ = got
        mats.append(np.column_stack([np.full(rows.shape[0], float(asset)), rows]))
    if not mats:
        return []
    bundle = model.bundle
    ids, X = bundle.features.transform_last(np.concatenate(mats))
    # the usage counter at each life's first reading: a part first seen mid-life is scored
    # by the joined estimators when the kind has them (as the scoring worker)
    first_usage = np.array([m[0, 1] for m in mats])
    v = bundle.predict(X, [component], first_usage=first_usage)[component]
    out = []
    for i, asset in enumerate(ids.astype(np.int64).tolist()):
        rul, rul_low = float(v["rul"][i]), float(v["rul_low"][i])
        rate = world.log.usage_rate_per_day(asset, component, now_h)
        prediction = Prediction(
            time=now, asset_id=asset, component=component, model_version_id=None,
            rul=rul, rul_low=rul_low, rul_high=float(v["rul_high"][i]),
            coverage=bundle.coverage_of(component),
            failure_probability=float(v["failure_probability"][i]),
            horizon=bundle.horizon, anomaly_score=float(v["anomaly_score"][i]),
            usage_rate_per_day=None if math.isnan(rate) else rate,
            due_at=_due(now, rul, rate), due_at_conservative=_due(now, rul_low, rate),
        )  # fmt: skip
        out.append(prediction)
    return out


def score_and_decide(
    world: World,
    model: WearModel,
    states: dict[tuple[int, str], str],
    orders: dict[tuple[int, str], Order],
    triggers: Counter[str],
    latest: dict[tuple[int, str], Prediction] | None = None,
) -> int:
    """Score every live component (:func:`predict_live`), apply the product's policy; how
    many orders it raised (``triggers`` counts what fired for each; ``latest`` keeps each
    component's last prediction)."""
    kind, econ, now_h = world.kind, ECONOMICS[world.kind], world.now_h
    ent = entitlements(kind)
    window = float(ent.order_lead_days + econ.shipping_days)  # policy.window_days, no depot DB
    now = at(now_h)
    raised = 0
    for component in world.components:
        for prediction in predict_live(world, model, component):
            key = (prediction.asset_id, component)
            if latest is not None:
                latest[key] = prediction
            step = policy.next_due_state(states.get(key, "clear"), prediction, ent, window, now)
            states[key] = step.state
            if step.state != "due":
                continue
            order = orders.get(key)
            if order is None:
                due = policy.order_due_at(prediction, window, now, ent.risk_threshold)
                due_h = (due - START) / timedelta(hours=1)
                orders[key] = Order(now_h, due_h, now_h + 24.0 * econ.shipping_days)
                triggers.update(step.fired or ["still due"])
                raised += 1
                continue
            earlier = policy.rescheduled_due_at(
                at(order.due_h), prediction, window, ent.risk_threshold
            )
            if earlier is not None:
                order.due_h = (earlier - START) / timedelta(hours=1)
                triggers[RESCHEDULED] += 1
    return raised


def _due(now: datetime, rul: float, rate: float) -> datetime | None:
    if math.isnan(rate) or rate <= 0:
        return None
    return now + timedelta(days=min(rul / rate, MAX_DUE_DAYS))


@dataclass
class StrategyResult:
    """What one strategy did to one kind's fleet in the evaluated period."""

    lives: list[Life]
    orders_raised: int = 0
    orders_late: int = 0  # the component failed while its order was open
    triggers: Counter[str] = field(default_factory=Counter)  # what fired for each order
    # per failure under the predictive strategy: the component's last prediction before it
    # (None: never scored in that life) and whether its life began before fleetcare saw it
    at_failure: list[FailureSeen] = field(default_factory=list)


@dataclass(frozen=True)
class FailureSeen:
    """A failure and what the last prediction of that life said."""

    joined: bool
    random_fault: bool
    rul: float | None
    rul_low: float | None
    failure_probability: float | None

    @classmethod
    def of(cls, life: Life, last: Prediction | None) -> FailureSeen:
        if last is None:
            return cls(life.joined, life.random_fault, None, None, None)
        return cls(life.joined, life.random_fault, last.rul, last.rul_low, last.failure_probability)


def run_strategy(
    world: World,
    strategy: str,
    days: float,
    *,
    intervals: dict[str, float] | None = None,
    model: WearModel | None = None,
    coverage: float | Mapping[str, float] | None = None,
) -> StrategyResult:
    """Run ``world`` (a copy is made) for ``days`` under ``strategy``; the predictive
    strategy's interval ``coverage`` is one for every component or one per component (None:
    the model's own, the kind's setting)."""
    w = copy.deepcopy(world)
    result = StrategyResult(lives=w.lives)
    end_h = w.now_h + days * 24.0
    next_score_h = w.now_h
    states: dict[tuple[int, str], str] = {}
    orders: dict[tuple[int, str], Order] = {}
    latest: dict[tuple[int, str], Prediction] = {}
    scorer = model if model is None or coverage is None else model.at_coverage(coverage)
    while w.now_h < end_h - 1e-9:
        ended = len(w.lives)
        for asset, component, _ in w.step():
            key = (asset, component)
            if orders.pop(key, None) is not None:
                result.orders_late += 1  # its part is used for the repair
            states.pop(key, None)
            last = latest.pop(key, None)
            life = next(x for x in w.lives[ended:] if (x.asset, x.component) == key)
            if strategy == "predictive":
                result.at_failure.append(FailureSeen.of(life, last))
        if strategy == "preventive":
            assert intervals is not None
            for c in w.components:
                usage = w.population.life_usage(c)
                due = (usage >= intervals[c]) & ~w.population.failed(c)
                for asset in np.flatnonzero(due).tolist():
                    w.replace_planned(asset, c)
        elif strategy == "predictive":
            assert model is not None
            for key, order in sorted(orders.items()):
                if order.work_at_h <= w.now_h and not w.population.failed(key[1])[key[0]]:
                    del orders[key]
                    states.pop(key, None)
                    latest.pop(key, None)
                    w.replace_planned(*key)
            if w.now_h >= next_score_h:
                assert scorer is not None
                result.orders_raised += score_and_decide(
                    w, scorer, states, orders, result.triggers, latest
                )
                next_score_h += SCORE_EVERY_H
        elif strategy != "run_to_failure":
            raise ValueError(f"unknown strategy {strategy!r}")
    return result
