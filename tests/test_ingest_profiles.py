"""Payload profiles: bad documents, JSON and row formats through the real pipeline, topic
patterns, the HTTP ingest endpoint, and a device of one customer naming another's asset."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from psycopg import Connection

from fleetcare.clock import ManualClock
from fleetcare.db import connect
from ingest import profile_service
from ingest.profiles import Good, ProfileError, load_profile_file, parse_profile
from ingest.schemas import IngestLimits
from tests.ingest_helpers import OPERATOR, SmallFleet, make_fleet, raw

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

JSON_PROFILE: dict[str, Any] = {
    "name": "acme-tpms",
    "format": "json",
    "batch": "data.records",
    "asset": "sensor.wheel",
    "time": {"field": "t", "format": "epoch_s"},
    "metrics": {
        "temperature_c": {"field": "temp_f", "scale": 5 / 9, "offset": -160 / 9},
        "pressure_kpa": {"field": "p.psi", "scale": 6.894757},
    },
}

ROWS_PROFILE: dict[str, Any] = {
    "name": "acme-rows",
    "format": "text",
    "columns": ["wheel", "cycle", "km", "kpa"],
    "asset": "wheel",
    "asset_prefix": "TRK-",
    "time": {"field": "cycle", "format": "cycle", "origin": "2026-11-26T00:00:00Z", "step_s": 60},
    "metrics": {"odometer_km": {"field": "km"}, "pressure_kpa": {"field": "kpa"}},
}

LONG_PROFILE: dict[str, Any] = {
    "name": "acme-long",
    "format": "csv",
    "header": True,
    "layout": "long",
    "asset": "asset",
    "time": {"field": "time", "format": "rfc3339"},
    "metric_column": "signal",
    "value_column": "value",
    "metrics": {"pressure_kpa": {"field": "P", "scale": 100.0}},  # bar → kPa
}


@pytest.fixture
def small(conn: Connection[Any]) -> SmallFleet:
    return make_fleet(conn)


@pytest.fixture
def limits(topic_root: str) -> IngestLimits:
    return IngestLimits(topic_root=topic_root, max_payload_bytes=4096, max_readings_per_message=10)


def apply(conn: Connection[Any], doc: dict[str, Any]) -> None:
    profile_service.apply_profile(conn, OPERATOR, doc, source="test")
    conn.commit()


def speak(conn: Connection[Any], device_ref: str, profile: str | None) -> None:
    conn.execute("UPDATE devices SET profile = %s WHERE ref = %s", (profile, device_ref))
    conn.commit()


def stored(conn: Connection[Any]) -> list[tuple[str, str, datetime, float]]:
    return [
        (r[0], r[1], r[2], round(r[3], 3))
        for r in conn.execute(
            "SELECT a.ref, m.name, t.time, t.value FROM telemetry t"
            " JOIN assets a ON a.id = t.asset_id JOIN metrics m ON m.id = t.metric_id"
            " ORDER BY a.ref, m.name, t.time"
        ).fetchall()
    ]


def quarantined(conn: Connection[Any]) -> list[tuple[str, str]]:
    return conn.execute("SELECT reason, detail FROM quarantine ORDER BY id").fetchall()


def store(conn: Connection[Any], limits: IngestLimits, *messages: Any) -> Any:
    from ingest.pipeline import store_messages

    with conn.transaction():
        return store_messages(conn, list(messages), limits=limits, clock=ManualClock(NOW))


# --- bad profiles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"name": "Bad Name"}, "name: String should match pattern"),
        ({"format": "xml"}, "format: Input should be"),
        ({"asset": None}, '"asset" is required'),
        ({"time": {"field": "t", "format": "cycle"}}, 'needs "origin" and "step_s"'),
        ({"time": {"field": "t", "format": "epoch_s", "step_s": 5}}, 'belong to format "cycle"'),
        ({"metrics": {"pressure_kpa": {"field": "p", "scale": 0}}}, "scale must be finite"),
        ({"metrics": {"pressure_kpa": {"field": "p", "factor": 2}}}, "metrics.pressure_kpa.factor"),
        ({"topic": "acme/+/{device}"}, "no wildcards"),
        ({"columns": ["a"]}, "belong to csv/text profiles"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_profile_names_source_field_and_problem(change: dict[str, Any], says: str) -> None:
    doc = {**JSON_PROFILE, **change}
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(ProfileError) as err:
        parse_profile(doc, "pumps.yaml")
    assert err.value.detail.startswith("pumps.yaml: ")
    assert says in err.value.detail


def test_bad_rows_profile_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="fields not among the columns: kpa2"):
        parse_profile({**ROWS_PROFILE, "metrics": {"pressure_kpa": {"field": "kpa2"}}}, "rows.yaml")
    with pytest.raises(ProfileError, match='needs "metric_column" and "value_column"'):
        parse_profile({**LONG_PROFILE, "value_column": None}, "long.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match=r"broken.yaml: not valid YAML"):
        load_profile_file(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ProfileError, match=r"list.json: a profile is a mapping"):
        load_profile_file(listed)
    with pytest.raises(ProfileError, match=r"missing.yaml: cannot read"):
        load_profile_file(tmp_path / "missing.yaml")


def test_profile_naming_an_unknown_metric_is_refused_and_changes_nothing(
    conn: Connection[Any],
) -> None:
    doc = {**JSON_PROFILE, "metrics": {"pressure_psi": {"field": "p"}}}
    with pytest.raises(ProfileError, match="no kind has pressure_psi"):
        profile_service.apply_profile(conn, OPERATOR, doc, source="tpms.yaml")
    conn.rollback()
    assert profile_service.list_profiles(conn) == []


def test_apply_is_versioned_only_on_change(conn: Connection[Any]) -> None:
    first = profile_service.apply_profile(conn, OPERATOR, JSON_PROFILE, source="a")
    again = profile_service.apply_profile(conn, OPERATOR, JSON_PROFILE, source="a")
    changed = profile_service.apply_profile(
        conn, OPERATOR, {**JSON_PROFILE, "description": "v2"}, source="a"
    )
    assert (first.version, again.version, changed.version) == (1, 1, 2)


# --- formats through the pipeline ------------------------------------------------------------


def test_json_profile_converts_units_keeps_good_and_quarantines_the_rest(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    apply(conn, JSON_PROFILE)
    speak(conn, small.device_a, "acme-tpms")
    t0 = int((NOW - timedelta(minutes=1)).timestamp())
    payload = {
        "data": {
            "records": [
                {"sensor": {"wheel": small.tires[0]}, "t": t0, "temp_f": 212, "p": {"psi": 100}},
                {"sensor": {"wheel": small.tires[1]}, "temp_f": 50},  # no time
                {"sensor": {"wheel": small.tires[1]}, "t": "soon", "temp_f": 50},
                {"sensor": {}, "t": t0, "temp_f": 50},  # no asset
                {"sensor": {"wheel": small.elevator}, "t": t0, "temp_f": 50},  # B's asset
                {"sensor": {"wheel": small.tires[2]}, "t": t0, "p": {"psi": "flat"}},
                {"sensor": {"wheel": small.tires[2]}, "t": t0, "other": 1},
            ]
        }
    }
    result = store(conn, limits, raw(f"{limits.topic_root}/{small.device_a}/telemetry", payload))
    when = NOW - timedelta(minutes=1)
    assert stored(conn) == [
        (small.tires[0], "pressure_kpa", when, 689.476),
        (small.tires[0], "temperature_c", when, 100.0),
    ]
    reasons = [r for r, _ in quarantined(conn)]
    assert reasons == [
        "bad_timestamp",
        "bad_timestamp",
        "bad_structure",
        "unknown_asset",
        "not_a_number",
        "bad_structure",
    ]
    details = dict(zip(range(6), [d for _, d in quarantined(conn)], strict=True))
    assert "no time at 't'" in details[0] and "'soon' is not epoch_s" in details[1]
    assert f"no asset {small.elevator!r} of this customer" in details[3]
    # each says where in the device's own message: its batch array, not fleetcare's "readings"
    assert [d.split(":", 1)[0] for d in details.values()] == [
        f"data.records[{i}]" for i in (1, 2, 3, 4, 5, 6)
    ]
    assert result.stored == 2
    # the same message again stores nothing new
    again = store(conn, limits, raw(f"{limits.topic_root}/{small.device_a}/telemetry", payload))
    assert (again.stored, again.duplicates) == (0, 2)


# A gateway format of one-level fields: read by the fast path (typed decoding, ingest.profile_fast)
FLAT_PROFILE: dict[str, Any] = {
    "name": "acme-flat",
    "format": "json",
    "batch": "data",
    "asset": "id",
    "asset_prefix": "TRK-",
    "time": {"field": "t", "format": "epoch_ms"},
    "metrics": {
        "pressure_kpa": {"field": "p", "scale": 6.894757},
        "temperature_c": {"field": "f", "scale": 5 / 9, "offset": -160 / 9},
        "odometer_km": {"field": "km"},
    },
}
T_MS = 1_795_687_200_123


@pytest.mark.parametrize(
    ("records", "fast"),
    [
        ([{"id": "1", "t": T_MS, "p": 100, "f": 212.0, "km": 7}], True),
        ([{"id": "1", "t": T_MS, "p": 100.5}, {"id": "2", "t": T_MS + 1, "km": 3}], True),
        ([{"id": "1", "t": T_MS + 0.7, "p": 1, "other": {"deep": [[[1]]]}}], True),
        ([{"id": "1", "t": -5, "p": 1}, {"id": "1", "t": 10**13, "p": 1}], True),
        ([{"id": "1", "t": 2**62, "p": 1}], False),  # beyond any time: a problem
        ([{"id": "1", "t": T_MS, "p": "100"}], False),  # a number as text
        ([{"id": "1", "t": T_MS, "p": None}], False),
        ([{"id": "1", "t": T_MS, "p": True}], False),
        ([{"id": 7, "t": T_MS, "p": 1}], False),  # an integer asset id
        ([{"id": "", "t": T_MS, "p": 1}], False),
        ([{"id": "1", "p": 1}], False),  # no time
        ([{"id": "1", "t": "soon", "p": 1}], False),
        ([{"id": "1", "t": T_MS, "x": 1}], False),  # none of the metrics
        ([{"id": "1", "t": T_MS, "p": 1}] * 11, False),  # too many
    ],
)
def test_fast_json_path_reads_as_the_careful_one(records: list[Any], fast: bool) -> None:
    """The fast path gives the careful path's readings, or leaves the message to it."""
    from ingest.decode import Reading
    from ingest.profile_fast import fast_json_reader
    from ingest.profiles import compile_profile

    compiled = compile_profile(parse_profile(FLAT_PROFILE, "test"))
    reader = fast_json_reader(compiled)
    assert reader is not None
    payload = json.dumps({"data": records, "gateway": {"fw": [1, 2]}}).encode()
    got = reader.read(payload, 10, Reading)
    assert (got is not None) == fast
    careful = compiled.read_json(payload, 10)
    if got is not None:
        assert type(careful) is list
        assert got == [Reading(a, us // 1000, m) for a, us, m in cast(list[Good], careful)]
    for doc in (JSON_PROFILE, {**FLAT_PROFILE, "metrics": {"p": {"field": "t"}}}):
        assert fast_json_reader(compile_profile(parse_profile(doc, "test"))) is None


def test_fast_json_profile_path_stores_and_quarantines_as_the_careful_one(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    apply(conn, {**FLAT_PROFILE, "asset_prefix": ""})
    speak(conn, small.device_a, "acme-flat")
    topic = f"{limits.topic_root}/{small.device_a}/telemetry"
    t_ms = int((NOW - timedelta(minutes=1)).timestamp() * 1000)
    good = {"data": [{"id": small.tires[0], "t": t_ms, "p": 100, "f": 212}]}  # the fast path
    mixed = {  # the careful path: one reading's pressure is text
        "data": [
            {"id": small.tires[1], "t": t_ms, "p": 100},
            {"id": small.tires[2], "t": t_ms, "p": "flat"},
            {"id": small.elevator, "t": t_ms, "p": 100},
        ]
    }
    result = store(conn, limits, raw(topic, good), raw(topic, mixed))
    when = NOW - timedelta(minutes=1)
    assert stored(conn) == [
        (small.tires[0], "pressure_kpa", when, 689.476),
        (small.tires[0], "temperature_c", when, 100.0),
        (small.tires[1], "pressure_kpa", when, 689.476),
    ]
    assert [r for r, _ in quarantined(conn)] == ["not_a_number", "unknown_asset"]
    assert result.stored == 3


def test_whole_message_problems_of_a_profile(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    apply(conn, JSON_PROFILE)
    speak(conn, small.device_a, "acme-tpms")
    topic = f"{limits.topic_root}/{small.device_a}/telemetry"
    store(
        conn,
        limits,
        raw(topic, b"{not json"),
        raw(topic, {"data": {"records": {"not": "a list"}}}),
        raw(topic, {"data": {"records": [{}] * 11}}),
        raw(topic, b"x" * 5000),
    )
    reasons = [r for r, _ in quarantined(conn)]
    assert reasons == ["bad_json", "bad_structure", "too_many_readings", "oversized"]
    assert "no array at 'data.records'" in quarantined(conn)[1][1]


def test_text_rows_on_a_cycle_time_base(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    apply(conn, ROWS_PROFILE)
    speak(conn, small.device_a, "acme-rows")
    tire = small.tires[0].removeprefix("TRK-")  # "0-FL"
    body = f"{tire} 10 1000.5 800\n\n{tire} 11 1001 x\n{tire} 12 1002\n{tire} zz 1 1\n"
    store(conn, limits, raw(f"{limits.topic_root}/{small.device_a}/telemetry", body.encode()))
    t10 = datetime(2026, 11, 26, 0, 10, tzinfo=UTC)
    t11 = t10 + timedelta(minutes=1)
    assert stored(conn) == [
        (small.tires[0], "odometer_km", t10, 1000.5),
        (small.tires[0], "odometer_km", t11, 1001.0),
        (small.tires[0], "pressure_kpa", t10, 800.0),
    ]
    q = quarantined(conn)
    assert [r for r, _ in q] == ["not_a_number", "bad_structure", "bad_timestamp"]
    # each by its line in the message, blank lines counted (they were rows: "line 3" was the
    # fourth line; the value was "readings[1]")
    assert q[0][1].startswith("line 3: pressure_kpa = 'x' is not a number"), q[0][1]
    assert "line 4: 3 columns, expected 4" in q[1][1]
    assert "line 5: cycle = 'zz' unreadable" in q[2][1]


def test_digit_group_underscores_and_other_scripts_digits_are_not_numbers(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    # Python's float() reads "1_000" and full-width 800 (U+FF18...); no device means them
    apply(conn, ROWS_PROFILE)
    speak(conn, small.device_a, "acme-rows")
    tire = small.tires[0].removeprefix("TRK-")
    body = f"{tire} 10 1_000 800\n{tire} 11 1001 \uff18\uff10\uff10\n{tire} 12 1002 801\n"
    store(conn, limits, raw(f"{limits.topic_root}/{small.device_a}/telemetry", body.encode()))
    t10 = datetime(2026, 11, 26, 0, 10, tzinfo=UTC)
    t11, t12 = t10 + timedelta(minutes=1), t10 + timedelta(minutes=2)
    assert stored(conn) == [
        (small.tires[0], "odometer_km", t11, 1001.0),
        (small.tires[0], "odometer_km", t12, 1002.0),
        (small.tires[0], "pressure_kpa", t10, 800.0),
        (small.tires[0], "pressure_kpa", t12, 801.0),
    ]
    q = quarantined(conn)
    assert [r for r, _ in q] == ["not_a_number", "not_a_number"]
    assert q[0][1] == (
        "line 1: odometer_km = '1_000' is not a number (digit-group underscores are not read)"
    )
    assert q[1][1].startswith("line 2: pressure_kpa = '\uff18\uff10\uff10' is not a number")
    assert q[1][1].endswith("(only ASCII digits 0-9 are read)")


def test_as_number_reads_ascii_decimal_text_only() -> None:
    from ingest.times import as_number

    assert as_number(" 12.5 ") == 12.5 and as_number("-1e3") == -1000.0 and as_number(7) == 7.0
    for text in ("1_000", "\uff11\uff12", "\u0661\u0662", "1\u0662", "", "abc", None, True):
        assert as_number(text) is None, text


def test_long_csv_rows_with_header(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    apply(conn, LONG_PROFILE)
    speak(conn, small.device_a, "acme-long")
    tire = small.tires[1]
    body = (
        "asset,time,signal,value\n"
        f"{tire},2026-11-26T09:00:00Z,P,8.5\n"
        f"{tire},2026-11-26T09:00:00Z,T,40\n"
    )
    store(conn, limits, raw(f"{limits.topic_root}/{small.device_a}/telemetry", body.encode()))
    assert stored(conn) == [(tire, "pressure_kpa", datetime(2026, 11, 26, 9, tzinfo=UTC), 850.0)]
    assert quarantined(conn) == [("unknown_metric", "line 3: the profile maps no metric 'T'")]
    # a header naming the value column twice is ambiguous: the message is quarantined saying
    # so (the last of the two was read, silently)
    twice = f"asset,time,signal,value,value\n{tire},2026-11-26T10:00:00Z,P,8.6,9.9\n"
    store(conn, limits, raw(f"{limits.topic_root}/{small.device_a}/telemetry", twice.encode()))
    assert len(stored(conn)) == 1
    assert quarantined(conn)[1] == (
        "bad_structure",
        "profile acme-long: value column 'value' is named twice among the columns "
        "(asset, time, signal, value, value)",
    )


def test_topic_pattern_names_the_device(
    conn: Connection[Any], small: SmallFleet, limits: IngestLimits
) -> None:
    apply(conn, {**JSON_PROFILE, "topic": "acme/tpms/{device}/up", "batch": None})
    speak(conn, small.device_a, "acme-tpms")
    t0 = int((NOW - timedelta(minutes=1)).timestamp())
    one = {"sensor": {"wheel": small.tires[0]}, "t": t0, "temp_f": 32}
    store(
        conn,
        limits,
        raw(f"acme/tpms/{small.device_a}/up", one),
        raw("acme/tpms/nobody/up", one),
        raw("acme/other/x/up", one),
    )
    assert [s[1:] for s in stored(conn)] == [("temperature_c", NOW - timedelta(minutes=1), 0.0)]
    assert [r for r, _ in quarantined(conn)] == ["bad_topic", "unknown_device"]


# --- the HTTP endpoint, CLI and API ---------------------------------------------------------


def basic(ref: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{ref}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_http_telemetry_native_and_profiled(
    client: TestClient, db_url: str, operator_headers: dict[str, str]
) -> None:
    with connect(db_url) as c:
        small = make_fleet(c)
    now = datetime.now(UTC).replace(microsecond=0)
    body = {"asset": small.tires[0], "ts": now.isoformat(), "metrics": {"pressure_kpa": 810.0}}
    headers = basic(small.device_a, small.secret_a)
    got = client.post("/v1/telemetry", content=json.dumps(body), headers=headers)
    assert got.status_code == 200, got.text
    assert got.json() == {
        "device": small.device_a,
        "stored": 1,
        "duplicates": 0,
        "quarantined": {},
        "positions_stored": 0,
        "positions_duplicates": 0,
    }
    # committed before the answer: another connection sees it
    with connect(db_url) as c:
        assert c.execute("SELECT count(*) FROM telemetry").fetchone() == (1,)
    again = client.post("/v1/telemetry", content=json.dumps(body), headers=headers).json()
    assert (again["stored"], again["duplicates"]) == (0, 1)
    # customer A's device naming customer B's asset
    cross = {**body, "asset": small.elevator, "metrics": {"door_close_s": 3.0}}
    refused = client.post("/v1/telemetry", content=json.dumps(cross), headers=headers).json()
    assert refused["stored"] == 0 and refused["quarantined"] == {"unknown_asset": 1}
    # wrong or missing credentials
    bad = client.post("/v1/telemetry", content=b"{}", headers=basic(small.device_a, "wrong"))
    assert bad.status_code == 401 and bad.json()["error"] == "unauthorized"
    assert client.post("/v1/telemetry", content=b"{}").status_code == 401
    # a malformed Basic header says what is wrong with it (it was FastAPI's "Not
    # authenticated", code http_error, before the device check could say so)
    no_colon = "Basic " + base64.b64encode(small.device_a.encode()).decode()
    for malformed in ("Basic %%%", no_colon, "Basic " + base64.b64encode(b"\xe9:x").decode()):
        for path in ("/v1/telemetry", "/v1/telemetry/position"):
            r = client.post(path, content=b"{}", headers={"Authorization": malformed})
            assert (r.status_code, r.json()["code"]) == (401, "unauthorized"), r.text
            assert r.json()["detail"] == (
                "Authorization: Basic needs base64 of 'device ref:secret'"
            ), r.text
    big = client.post("/v1/telemetry", content=b" " * 300_000, headers=headers)
    assert big.status_code == 413
    # the same device switched to a JSON profile through the API
    assert client.post("/v1/profiles", json=JSON_PROFILE, headers=operator_headers).is_success
    dev = small.device_ids[small.device_a]
    patched = client.patch(
        f"/v1/devices/{dev}", json={"profile": "acme-tpms"}, headers=operator_headers
    )
    assert patched.json()["profile"] == "acme-tpms"
    rec = {"sensor": {"wheel": small.tires[1]}, "t": int(now.timestamp()), "temp_f": 68}
    got = client.post(
        "/v1/telemetry", content=json.dumps({"data": {"records": [rec]}}), headers=headers
    )
    assert got.json()["stored"] == 1
    unknown = client.patch(f"/v1/devices/{dev}", json={"profile": "nope"}, headers=operator_headers)
    assert unknown.status_code == 422 and "no profile 'nope'" in unknown.json()["detail"]


def test_profiles_api_operator_writes_everyone_reads(
    client: TestClient, operator_headers: dict[str, str], make_tenant: Any
) -> None:
    tenant = make_tenant()
    assert client.post("/v1/profiles", json=JSON_PROFILE, headers=tenant.headers).status_code == 403
    created = client.post("/v1/profiles", json=JSON_PROFILE, headers=operator_headers)
    assert created.status_code == 200 and created.json()["version"] == 1
    bad = client.post("/v1/profiles", json={**JSON_PROFILE, "format": 3}, headers=operator_headers)
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("request body: format:")
    assert [p["field"] for p in bad.json()["problems"]] == ["format"]  # the field, not "body"
    listed = client.get("/v1/profiles", headers=tenant.headers).json()
    assert [p["name"] for p in listed] == ["acme-tpms"]
    shown = client.get("/v1/profiles/acme-tpms", headers=tenant.headers).json()
    assert shown["document"]["metrics"]["pressure_kpa"]["field"] == "p.psi"
    assert client.get("/v1/profiles/nope", headers=tenant.headers).status_code == 404


def test_a_customer_sees_only_its_own_devices_in_a_sparkplug_profile(
    client: TestClient, operator_headers: dict[str, str], make_tenant: Any
) -> None:
    """A Sparkplug B profile maps edge nodes onto customers' devices and assets by reference:
    another customer read them all (``GET /v1/profiles``: A's device and asset references in
    B's answer). Each customer now sees the mappings of its own devices, a profile with none
    of them not at all (404); the operator sees everything."""
    a, b = make_tenant("zqalice"), make_tenant()
    for tenant, ref in ((a, "zqalice-edge"), (b, "bob-edge")):
        made = client.post("/v1/devices", json={"ref": ref}, headers=tenant.headers)
        assert made.status_code == 201, made.text
    doc: dict[str, Any] = {
        "name": "plant-spb",
        "format": "sparkplug_b",
        "sparkplug": [
            {
                "group": "plant",
                "edge_node": edge,
                "fleetcare_device": device,
                "metrics": {"P": {"asset": asset, "metric": "pressure_kpa"}},
            }
            for edge, device, asset in (
                ("e1", "zqalice-edge", "ZQALICE-TIRE-1"),
                ("e2", "bob-edge", "BOB-TIRE-1"),
            )
        ],
    }
    only_a = {**doc, "name": "alice-spb", "sparkplug": [{**doc["sparkplug"][0], "group": "a"}]}
    for d in (doc, only_a):
        assert client.post("/v1/profiles", json=d, headers=operator_headers).is_success
    everything = client.get("/v1/profiles/plant-spb", headers=operator_headers).json()
    assert len(everything["document"]["sparkplug"]) == 2
    listed = client.get("/v1/profiles", headers=b.headers)
    assert [p["name"] for p in listed.json()] == ["plant-spb"]
    assert "zqalice" not in listed.text.lower(), listed.text
    shown = client.get("/v1/profiles/plant-spb", headers=b.headers)
    assert shown.status_code == 200 and "zqalice" not in shown.text.lower(), shown.text
    assert [e["fleetcare_device"] for e in shown.json()["document"]["sparkplug"]] == ["bob-edge"]
    assert client.get("/v1/profiles/alice-spb", headers=b.headers).status_code == 404
    mine = client.get("/v1/profiles/alice-spb", headers=a.headers).json()
    assert mine["document"]["sparkplug"][0]["fleetcare_device"] == "zqalice-edge"


def test_profiles_cli(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    good = tmp_path / "rows.yaml"
    good.write_text(json.dumps(ROWS_PROFILE))  # JSON is YAML too
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nformat: text\n")
    runner = CliRunner()
    failed = runner.invoke(app, ["profiles", "apply", str(good), str(bad)])
    assert failed.exit_code == 2
    assert f"{bad}: " in failed.output and '"asset" is required' in failed.output
    ok = runner.invoke(app, ["profiles", "apply", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "profile acme-rows (text) version 1" in ok.output
    listed = runner.invoke(app, ["profiles", "list", "--json"])
    assert json.loads(listed.stdout.splitlines()[0])["name"] == "acme-rows"
    shown = runner.invoke(app, ["profiles", "show", "acme-rows"])
    assert json.loads(shown.stdout)["columns"] == ROWS_PROFILE["columns"]
    missing = runner.invoke(app, ["profiles", "show", "nope"])
    assert missing.exit_code == 2 and "no profile 'nope'" in missing.output
