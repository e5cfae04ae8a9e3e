"""Every prediction explains itself (signals, failure mode, action), the same way for the same
input, in the kind definition's words; broken sensors make it low-confidence and raise no
order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from psycopg import Connection

from fleetcare.clock import ManualClock
from kinds.loader import builtin_kinds
from kinds.schemas import KindDefinition
from maintenance.policy import service as policy
from models import explain
from models import repository as repo
from models.explain import Explainer
from models.quality import QualityGate
from models.scoring import ModelCache, ReadingsCache, score_pass
from tests.fixtures.maintenance import T0, event_types, make_world, stock_depot
from tests.fixtures.wear import install_model, make_fleet, train_fast, trained_tire_model

Conn = Connection[Any]
TIRE = builtin_kinds()["tire"]


def _score(conn: Conn, now: Any) -> Any:
    with conn.transaction():
        return score_pass(conn, ManualClock(now), models=ModelCache(), cache=ReadingsCache())


def test_every_prediction_explains_itself_and_the_same_way_again(conn: Conn) -> None:
    from fleet import service as fleet

    customer = fleet.ensure_customer(conn, "acme", "Acme")
    tires = make_fleet(conn, customer.id, n_assets=6)
    clock = ManualClock(T0)
    version = install_model(conn, trained_tire_model(), clock)
    assert _score(conn, T0).predictions == 6
    conn.commit()

    stored = {a: repo.list_predictions(conn, a)[0] for a in tires.asset_ids}
    for p in stored.values():
        e = p.explanation
        assert e is not None and e.method.startswith("shap.TreeExplainer")
        assert len(e.signals) == explain.TOP_SIGNALS
        magnitudes = [abs(s.contribution) for s in e.signals]
        assert magnitudes == sorted(magnitudes, reverse=True) and magnitudes[0] > 0
        assert all(s.text and s.signal in TIRE.metric_names for s in e.signals)
        assert e.action
        if e.failure_mode is not None:
            assert e.failure_mode.component == "tire"
            assert e.failure_mode.direction in ("rising", "falling", "high", "low", "unsteady")

    # the same readings, scored again from scratch (a new explainer): the same explanation
    loaded = ModelCache().get(conn, version.id)
    head, tail = loaded.model.history_rows()
    windows = repo.scoring_windows(conn, tires.asset_ids)
    readings = repo.fetch_readings(conn, loaded.layout, windows, head_rows=head, tail_rows=tail)
    ids, features = loaded.model.features.transform_last(readings.matrix)
    predicted = loaded.model.predict(features)
    issues = loaded.gate.issues(readings.matrix, readings.time_us, features)
    assert loaded.explainer is not None
    again = loaded.explainer.explain(readings.matrix, features, predicted, issues)["tire"]
    for asset_id, fresh in zip(ids.astype(int).tolist(), again, strict=True):
        explanation = stored[asset_id].explanation
        assert explanation is not None
        assert explanation.model_dump(mode="json") == _as_record(fresh)
    twice = loaded.explainer.explain(readings.matrix, features, predicted, issues)["tire"]
    assert twice == again


def _as_record(fresh: dict[str, Any]) -> dict[str, Any]:
    from models.schemas import Explanation

    return Explanation.model_validate(fresh).model_dump(mode="json")


def test_signal_names_come_from_the_kind_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    model = trained_tire_model()
    words = TIRE.model_dump()
    for metric in words["metrics"]:
        if metric["name"] == "temperature_c":
            metric["description"] = "casing heat"
    renamed = KindDefinition.model_validate(words)
    n_features = len(model.features.get_feature_names_out())
    monkeypatch.setattr(explain, "TOP_SIGNALS", n_features)  # every feature, to see each name
    rng = np.random.default_rng(3)
    rows = 12
    matrix = np.column_stack(
        [
            np.full(rows, 7.0),
            np.linspace(0, 5_500, rows),
            *(rng.normal(v, 1.0, rows) for v in (800.0, 60.0, 3000.0, 80.0, 9.0)),
        ]
    )
    _, features = model.features.transform_last(matrix)
    predicted = model.predict(features)
    out = Explainer(model, renamed).explain(matrix, features, predicted, [[]])["tire"][0]
    texts = [s["text"] for s in out["signals"] if s["signal"] == "temperature_c"]
    assert texts and all(t.startswith("casing heat") for t in texts)
    # windows are told in the kind's life unit: the usage they cover on this asset
    assert any("over the last 2,000 km" in t for t in texts)
    assert sum(1 for s in out["signals"] if s["signal"] == "odometer_km") == 1


def _write_tire_life(
    conn: Conn, asset_id: int, *, stuck_pressure: bool, seed: int, rows: int = 40
) -> None:
    """A worn tire's last ``rows`` hourly readings up to T0 (5,400 km a day); the pressure
    sensor stuck at one value, or reading normally."""
    rng = np.random.default_rng(seed)
    ids = dict(conn.execute("SELECT name, id FROM metrics WHERE kind = 'tire'").fetchall())
    km = np.linspace(50_000, 59_000, rows)
    wear = km / 60_000
    values = {
        "odometer_km": km,
        "tread_depth_mm": 16.0 - 14.4 * wear**1.2 + rng.normal(0, 0.15, rows),
        "pressure_kpa": (
            np.full(rows, 790.0) if stuck_pressure else 820 - 60 * wear + rng.normal(0, 4, rows)
        ),
        "temperature_c": 45.0 + 25.0 * wear**2 + rng.normal(0, 1.5, rows),
        "load_kg": 3000.0 + rng.normal(0, 150.0, rows),
        "speed_kmh": 80.0 + rng.normal(0, 5.0, rows),
    }
    times = [T0 - timedelta(hours=rows - i) for i in range(rows)]
    with conn.cursor() as cur:
        with cur.copy("COPY telemetry (time, asset_id, metric_id, value) FROM STDIN") as copy:
            for name, column in values.items():
                for i in range(rows):
                    if name == "tread_depth_mm" and i % 5:
                        continue
                    copy.write_row((times[i], asset_id, ids[name], float(column[i])))
        cur.execute(
            "UPDATE assets SET renewed_at = %s WHERE id = %s",
            (times[0] - timedelta(hours=1), asset_id),
        )
        cur.execute(
            "INSERT INTO asset_seen (asset_id, last_seen_at) VALUES (%s, %s)"
            " ON CONFLICT (asset_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at",
            (asset_id, times[-1]),
        )
    conn.commit()


def test_a_stuck_sensor_gives_a_low_confidence_prediction_and_no_order(
    conn: Conn, client: TestClient, operator_headers: dict[str, str]
) -> None:
    stuck = make_world(conn, "dq-stuck", ref="TRK-9-FL")
    healthy = make_world(conn, "dq-ok", ref="TRK-9-FR")
    stock_depot(conn, "D", on_hand=5, shipping_days=1)
    make_fleet(conn, healthy.customer_id, n_assets=10, seed=2, prefix="HIST")
    trained = train_fast(conn, ManualClock(T0 - timedelta(days=2)))
    reference = repo.get_reference(conn, trained.version.id)
    assert reference is not None
    assert reference["signals"]["pressure_kpa"]["constant_share"] == 0.0
    assert len(reference["signals"]["pressure_kpa"]["shares"]) == 10
    conn.execute("UPDATE assets SET retired_at = %s WHERE ref LIKE 'HIST-%%'", (T0,))
    _write_tire_life(conn, stuck.asset_id, stuck_pressure=True, seed=5)
    _write_tire_life(conn, healthy.asset_id, stuck_pressure=False, seed=5)

    result = _score(conn, T0)
    conn.commit()
    assert result.scored_assets == 2 and result.low_confidence == 1
    [bad] = repo.list_predictions(conn, stuck.asset_id)
    [good] = repo.list_predictions(conn, healthy.asset_id)
    assert bad.low_confidence and not good.low_confidence
    assert bad.explanation is not None and good.explanation is not None
    [issue] = bad.explanation.data_quality
    assert issue.startswith("pressure_kpa stuck at 790 kPa over the last")
    assert bad.explanation.action.startswith("Check the sensors first")
    # both are due now: the healthy twin gets its order, the stuck one none
    assert good.due_at_conservative is not None and good.due_at_conservative < T0 + timedelta(5)

    before = {c: event_types(conn, c) for c in (stuck.customer_id, healthy.customer_id)}
    assert policy.process_queue(conn, ManualClock(T0)) == 2
    conn.commit()
    orders = conn.execute(
        "SELECT asset_id, explanation FROM maintenance_orders ORDER BY id"
    ).fetchall()
    assert [a for a, _ in orders] == [healthy.asset_id]
    # the order keeps why it was raised, and order.created carries it to webhooks
    assert orders[0][1] == good.explanation.model_dump(mode="json")
    assert "order.created" in event_types(conn, healthy.customer_id)
    assert event_types(conn, stuck.customer_id) == before[stuck.customer_id]
    payload = conn.execute(
        "SELECT payload FROM events WHERE type = 'order.created' AND customer_id = %s",
        (healthy.customer_id,),
    ).fetchone()
    assert payload is not None
    assert payload[0]["order"]["explanation"]["signals"][0]["text"]

    # the API and the dashboard say why, and why the stuck one raised nothing
    order_id = payload[0]["order"]["id"]
    detail = client.get(f"/v1/orders/{order_id}", headers=operator_headers).json()
    assert detail["explanation"] == good.explanation.model_dump(mode="json")
    listed = client.get(f"/v1/assets/{stuck.asset_id}/predictions", headers=operator_headers)
    [first] = listed.json()["items"] if "items" in listed.json() else listed.json()
    assert first["low_confidence"] is True and first["explanation"]["data_quality"] == [issue]
    page = client.get(f"/dashboard/assets/{stuck.asset_id}", headers=operator_headers).text
    assert "low confidence" in page and "No automatic order is raised" in page
    assert escape(issue) in page
    page = client.get(f"/dashboard/assets/{healthy.asset_id}", headers=operator_headers).text
    assert "Why: tire" in page and escape(good.explanation.action) in page
    assert all(escape(s.text) in page for s in good.explanation.signals)
    assert 'class="why-raised"' in page


def test_values_on_a_bound_and_gaps_are_found() -> None:
    model = trained_tire_model()
    gate = QualityGate.build(model, TIRE, None)
    rows = 10
    base = np.column_stack(
        [np.full(rows, 1.0), np.linspace(0, 900, rows), *(np.full(rows, 50.0),) * 5]
    )
    pegged = base.copy()
    pegged[:, 0] = 2.0
    pegged[-1, 3] = 250.0  # temperature_c at its upper bound
    matrix = np.concatenate([base, pegged])
    hour = 3_600_000_000
    times = np.array([i * hour for i in range(rows)] * 2, dtype=np.int64)
    times[rows + rows - 1] += 30 * hour  # the second asset's last step: a day and more
    _, features = model.features.transform_last(matrix)
    first, second = gate.issues(matrix, times, features)
    assert first == []
    assert "temperature_c at its upper bound (250 °C)" in second
    assert any(i.startswith("gap of 31 h without readings") for i in second)


def test_a_bound_the_metric_rests_on_in_training_is_not_a_pegged_sensor() -> None:
    """A parked truck reads speed 0 km/h, its lower bound: in `fleetcare up` 71% of the tires'
    predictions were low-confidence for it, and no order was raised on them. A bound on which
    a tenth or more of the training rows sat (the reference's lowest decile edge) is a resting
    value; one the training rarely reached still flags a pegged sensor."""
    model = trained_tire_model()
    rows = 10
    matrix = np.column_stack(
        [np.full(rows, 1.0), np.linspace(0, 900, rows), *(np.full(rows, 50.0),) * 5]
    )
    matrix[:, 2 + model.column_names.index("speed_kmh")] = np.linspace(60.0, 0.0, rows)
    times = np.arange(rows, dtype=np.int64) * 3_600_000_000
    _, features = model.features.transform_last(matrix)

    def issues(edges: list[float] | None) -> list[str]:
        reference = None if edges is None else {"signals": {"speed_kmh": {"edges": edges}}}
        return QualityGate.build(model, TIRE, reference).issues(matrix, times, features)[0]

    pegged = "speed_kmh at its lower bound (0 km/h)"
    assert issues([0.0, 28.5, 44.9]) == []  # the demo's training: half the rows parked
    assert issues([3.0, 28.5, 44.9]) == [pegged]  # rarely 0 in training
    assert issues(None) == [pegged]  # no reference: every bound as before


def test_a_model_shap_cannot_read_leaves_predictions_unexplained_not_unscored() -> None:
    import copy

    from sklearn.linear_model import LinearRegression

    from models.explain import build_explainer

    model = copy.deepcopy(trained_tire_model())
    assert isinstance(build_explainer(model, TIRE), Explainer)
    model.rul["tire"].model_ = LinearRegression().fit(np.zeros((3, 2)), np.zeros(3))
    assert build_explainer(model, TIRE) is None


def test_numbers_are_formatted_on_arrays_as_one_by_one() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate(
        [rng.normal(0, scale, 2_000) for scale in (1e-5, 0.01, 1, 10, 100, 1e4, 1e6, 1e17)]
        + [np.arange(-2_000, 2_000, 0.5)]  # every half step: the ties Python rounds to even
        + [np.array([0.0, -0.0, 99.5, 99.49999, 9.95, 0.995, 1e3, 1e4, 999.9999999999999])]
    )
    assert explain._numbers(values) == [explain._number(float(v)) for v in values]
    assert explain._rounded(values) == [explain._round(float(v)) for v in values]
    # three significant digits on arrays: every decade's edges, beyond the exact powers of
    # ten (1e22), subnormal and huge values, and the half steps of three digits
    tens = 10.0 ** np.arange(-30, 30)
    edges = np.concatenate(
        [
            tens,
            -tens,
            np.nextafter(tens, 0),
            np.nextafter(tens, np.inf),
            tens * 0.9995,
            np.arange(-2, 2, 0.0005),
            np.arange(-20_000, 20_000, 5.0),
            np.array([5e-324, 1e308, -1e308, 0.1005, 100.5, 999.5, np.nan, np.inf, -np.inf]),
        ]
    )
    rounded = explain._rounded(edges)
    assert [str(v) for v in rounded] == [str(explain._round(float(v))) for v in edges]
    assert explain._numbers(np.array([np.nan, np.inf, -np.inf])) == ["0", "0", "0"]
    assert explain._signed(np.array([-1234.0, 0.0, 0.42])) == ["-1,200", "±0", "+0.42"]


def test_the_top_signals_are_a_stable_sorts_first() -> None:
    rng = np.random.default_rng(4)
    sizes = np.abs(np.round(rng.normal(0, 2, (3_000, 12)), 1))  # many ties, zeros among them
    sizes[:200] = 0.0  # rows of ties only
    sizes[200:400, :4] = 1.5  # ties at the top
    for k in (1, 2, 3, 12):
        want = np.argsort(-sizes, axis=1, kind="stable")[:, :k]
        assert np.array_equal(explain._top(sizes, k), want)
    odd = sizes.copy()
    odd[5, 3] = np.nan  # not what contributions hold: sorted as before
    assert np.array_equal(explain._top(odd, 3), np.argsort(-odd, axis=1, kind="stable")[:, :3])


def test_explanations_are_encoded_at_once_as_one_by_one() -> None:
    import orjson

    def one(i: int, text: str) -> dict[str, Any]:
        return {
            "method": explain.METHOD,
            "base_rul": 40_000.5,
            "signals": [{"signal": "tread", "text": text, "contribution": -1.25e-5 * i}],
            "failure_mode": None if i % 2 else {"component": "tire", "text": "worn"},
            "action": f"Replace the tire within {i} km",
            "data_quality": [] if i % 3 else [text],
        }

    texts = ['},{"method":', 'a "quoted" }, {"method": x', "é 🚚 \\ \n", "", "{}"]
    explanations = [one(i, texts[i % len(texts)]) for i in range(50)]
    for n in (0, 1, 2, 50):
        assert explain.encode_utf8(explanations[:n]) == [orjson.dumps(e) for e in explanations[:n]]
    other = [{"text": "no method first"}, {"method": "m"}]  # not explanations: one by one
    assert explain.encode_utf8(other) == [orjson.dumps(e) for e in other]
