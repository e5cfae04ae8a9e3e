"""Malformed files and bodies at the API's file entry points: history uploads (CSV, Parquet),
itinerary uploads (CSV, JSON), free-form JSON and device posts. Each answers a 4xx that names
where and what, or a report that rejects the bad rows with reasons and stores the good ones;
never a 500, never a server path.

Most cases here answered 500, or refused a whole file for one row, before they were fixed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from fleetcare.db import connect
from ingest.profiles import ProfileError, load_profile_file
from ingest.sparkplug_state import parse_state
from kinds.loader import KindFileError, load_file
from tests.conftest import Tenant
from tests.ingest_helpers import make_fleet

LONG = {
    "name": "fuzz-long",
    "format": "csv",
    "header": True,
    "layout": "long",
    "asset": "engine",
    "asset_prefix": "ESN-",
    "time": {"field": "at", "format": "rfc3339"},
    "metric_column": "sensor",
    "value_column": "reading",
    "metrics": {"t24_r": {"field": "T24_K", "scale": 1.8}},
}
WIDE = {
    "name": "fuzz-wide",
    "format": "csv",
    "header": True,
    "asset": "engine",
    "asset_prefix": "ESN-",
    "time": {"field": "at", "format": "epoch_ms"},
    "metrics": {"t24_r": {"field": "t24_k", "scale": 1.8}},
}
HEADER = b"engine,at,sensor,reading\n"


def good(hour: int) -> bytes:
    return b"7,2024-05-01T%02d:00:00Z,T24_K,350\n" % hour


def parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


# label → (profile, file name, body, status, what the answer must say, values stored)
HISTORY: dict[str, tuple[str, str, bytes, int, str, int]] = {
    "a row not in UTF-8": (
        "fuzz-long",
        "plant 3.csv",
        HEADER + good(1) + b"7\xe9,2024-05-01T02:00:00Z,T24_K,350\n" + good(3),
        422,
        "plant 3.csv:3: not UTF-8 text",
        0,
    ),
    "a NUL in an asset id": (
        "fuzz-long",
        "f.csv",
        HEADER + good(4) + b"7\x00,2024-05-01T05:00:00Z,T24_K,350\n" + good(6),
        200,
        "is not a valid id",
        2,
    ),
    "a byte order mark": ("fuzz-long", "f.csv", b"\xef\xbb\xbf" + HEADER + good(7), 200, "", 1),
    "lines ending in a lone CR": (
        "fuzz-long",
        "f.csv",
        (HEADER + good(8)).replace(b"\n", b"\r"),
        422,
        "f.csv:1 (the header)",
        0,
    ),
    "times beyond 1970-2200": (
        "fuzz-wide",
        "w.csv",
        b"engine,at,t24_k\n7,1714557600000,350\n7,-99999999999999,350\n7,99999999999999,350\n"
        b"8,99999999999999,350\n",
        200,
        "w.csv:3: at = '-99999999999999' lies outside 1970-2200",
        1,
    ),
    "a column the profile reads named twice": (
        "fuzz-long",
        "twice.csv",
        b"engine,at,sensor,reading,reading\n7,2024-05-01T11:00:00Z,T24_K,350,351\n",
        422,
        "profile fuzz-long: value column 'reading' is named twice among the columns",
        0,
    ),
    "a column the profile does not read named twice": (
        "fuzz-long",
        "f.csv",
        b"engine,at,sensor,reading,note,note\n7,2024-05-01T12:00:00Z,T24_K,350,a,b\n",
        200,
        "",
        1,
    ),
    "a header that is not UTF-8 (UTF-16)": (
        "fuzz-long",
        "utf16.csv",
        (HEADER + good(13)).decode().encode("utf-16"),
        422,
        "utf16.csv:1: not UTF-8 text (byte 0xff)",
        0,
    ),
    "a Parquet column the profile reads named twice": (
        "fuzz-wide",
        "x.parquet",
        parquet(
            pa.Table.from_arrays(
                [pa.array([11]), pa.array([1714557600000]), pa.array([1.0]), pa.array([2.0])],
                names=["engine", "at", "t24_k", "t24_k"],
            )
        ),
        422,
        "profile fuzz-wide: metric t24_r column 't24_k' is named twice among the columns",
        0,
    ),
    "a truncated Parquet file": (
        "fuzz-wide",
        "x.parquet",
        parquet(pa.table({"engine": [7], "at": [1714557600000], "t24_k": [350.0]}))[:-20],
        422,
        "x.parquet: not a Parquet file",
        0,
    ),
    "a Parquet id column of lists": (
        "fuzz-wide",
        "x.parquet",
        parquet(pa.table({"engine": [[7]], "at": [1714557600000], "t24_k": [350.0]})),
        422,
        "column 'engine' holds list",
        0,
    ),
    "a Parquet binary id not in UTF-8": (
        "fuzz-wide",
        "x.parquet",
        parquet(
            pa.table(
                {
                    "engine": pa.array([b"\xff\xfe", b"9"], pa.binary()),
                    "at": [1714557600000, 1714557600000],
                    "t24_k": [350.0, 350.0],
                }
            )
        ),
        200,
        "x.parquet: row 1: asset id 'ESN-",
        1,
    ),
    "a Parquet time column of booleans": (
        "fuzz-wide",
        "x.parquet",
        parquet(pa.table({"engine": [10, 10], "at": [True, False], "t24_k": [350.0, 351.0]})),
        200,
        "x.parquet: row 1: at = 'True' is not a time of format epoch_ms",
        0,
    ),
}


def test_bad_history_files_are_clear_errors_or_reports_that_keep_the_good_rows(
    client: TestClient,
    make_tenant: Callable[..., Tenant],
    operator_headers: dict[str, str],
    db_url: str,
) -> None:
    for doc in (LONG, WIDE):
        assert client.post("/v1/profiles", json=doc, headers=operator_headers).is_success
    acme = make_tenant("acme")
    failures: list[str] = []
    for label, (profile, filename, body, status, says, stored) in HISTORY.items():
        r = client.post(
            "/v1/history/import",
            params={"kind": "engine", "profile": profile, "filename": filename},
            content=body,
            headers=acme.headers,
        )
        answer = str(r.json())
        if r.status_code != status or says not in answer or "/tmp" in answer:
            failures.append(f"{label}: {r.status_code} {answer[:300]}")
        elif status == 200 and r.json()["values_stored"] != stored:
            failures.append(f"{label}: stored {r.json()['values_stored']}, not {stored}")
    assert not failures, "\n".join(failures)
    with connect(db_url) as conn:
        refs = {r[0] for r in conn.execute("SELECT ref FROM assets").fetchall()}
    # an id whose every row has an unreadable time is not created
    assert "ESN-7" in refs and "ESN-8" not in refs and "ESN-9" in refs and "ESN-10" not in refs


def test_bad_itineraries_and_free_form_text_are_422_naming_where(
    client: TestClient, make_tenant: Callable[..., Tenant], db_url: str
) -> None:
    h = make_tenant("acme").headers
    deep = b"[" * 100_000 + b"]" * 100_000
    cases: list[tuple[str, bytes, str, str]] = [
        ("application/json", deep, "body: JSON nested too deeply", ""),
        ("application/json", b'{"legs": [' + b"9" * 5000 + b"]}", "body: not JSON", ""),
        (
            "text/csv",
            b"leg_id,carrier,from,to\n" + b"x" * 200_000 + b",TAIL-1,A,B\n",
            "the CSV cannot be read at line 2",
            "rows[1]",
        ),
        # a column named twice: the last one was taken silently, the row then refused for a
        # field it had; and a byte that is not UTF-8 was named by its offset ("byte 31")
        ("text/csv", b"leg_id,carrier,from,to,to\nL1,TAIL-1,A,B,C\n", "does not fit", "header"),
        (
            "text/csv",
            b"leg_id,carrier,from,to\nL1,TAIL-\xe9,A,B\n",
            "body: line 2: not UTF-8 text (byte 0xe9)",
            "",
        ),
    ]
    for content_type, body, detail, field in cases:
        r = client.post(
            "/v1/itineraries", content=body, headers={**h, "content-type": content_type}
        )
        assert r.status_code == 422, r.text
        assert detail in r.json()["detail"], r.text
        if field:
            assert [p["field"] for p in r.json()["problems"]] == [field], r.text
    twice = client.post(
        "/v1/itineraries",
        content=b"leg_id,carrier,from,to,to\nL1,TAIL-1,A,B,C\n",
        headers={**h, "content-type": "text/csv"},
    )
    assert twice.json()["problems"][0]["problem"] == "column 'to' is named twice", twice.text
    # a lone surrogate in free-form JSON: refused naming the field, not by the database
    r = client.post(
        "/v1/assets",
        content=b'{"kind": "tire", "ref": "T-1", "attributes": {"note": "\\ud800"}}',
        headers={**h, "content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert "attributes: text may not contain a lone surrogate" in r.json()["detail"], r.text
    # and over HTTP ingest, a reading of such an asset is quarantined beside a good one
    with connect(db_url) as conn:
        small = make_fleet(conn)
    ts = datetime.now(UTC).isoformat()  # the app's clock is the system's
    one = '{"asset": "%s", "ts": "' + ts + '", "metrics": {"speed_kmh": 10}}'
    lone = "\\ud800"  # the JSON escape of a lone surrogate
    r = client.post(
        "/v1/telemetry",
        content=f'{{"readings": [{one % "TRK-0-FL"}, {one % lone}]}}'.encode(),
        auth=(small.device_a, small.secret_a),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["stored"], r.json()["quarantined"]) == (1, {"unknown_asset": 1}), r.text
    # a NUL in a device's message is that reading's quarantine, as over MQTT: the input guard
    # used to refuse the whole message with a 422 ("body: text may not contain the NUL
    # character") and the good reading beside it was lost
    for nul in ("\\u0000", "TRK-0-FL\\u0000"):
        ts = datetime.now(UTC).isoformat()
        one = '{"asset": "%s", "ts": "' + ts + '", "metrics": {"speed_kmh": 11}}'
        r = client.post(
            "/v1/telemetry",
            content=f'{{"readings": [{one % "TRK-1-FL"}, {one % nul}]}}'.encode(),
            auth=(small.device_a, small.secret_a),
        )
        assert r.status_code == 200, r.text
        assert (r.json()["stored"], r.json()["quarantined"]) == (1, {"unknown_asset": 1}), r.text


def test_deep_or_overlong_definition_files_are_clear_errors(tmp_path: Path) -> None:
    """Kind and profile files (``fleetcare kinds apply``, ``fleetcare profiles apply``): JSON or
    YAML nested 50,000 deep raised RecursionError, a 5,000-digit integer ValueError (a
    traceback at the command line); now each is the file's error, naming it."""
    deep_json = b'{"name": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    bodies = {
        "deep.json": deep_json,
        "deep.yaml": b"name: " + b"[" * 50_000 + b"]" * 50_000,
        "digits.json": b'{"name": 1' + b"0" * 5000 + b"}",
    }
    for name, body in bodies.items():
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(KindFileError, match=re.escape(str(path))):
            load_file(path)
        with pytest.raises(ProfileError, match=re.escape(str(path))):
            load_profile_file(path)
    assert parse_state(b"[" * 50_000 + b"]" * 50_000) is None  # a Sparkplug STATE payload


def _alias_bomb(levels: int) -> str:
    """A few hundred bytes of YAML whose aliases expand to 9**levels strings."""
    text = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, levels):
        text += f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n"
    return text + f"name: pump\ndisplay_name: *a{levels - 1}\n"


@pytest.mark.timeout(60)
def test_yaml_aliases_that_expand_past_a_bound_are_the_files_error(tmp_path: Path) -> None:
    """A "billion laughs" kind or profile file (9 levels of aliases, 387 million strings):
    ``fleetcare kinds apply`` ran for minutes walking it. Now the file's error, at once;
    aliases that stay small still read, and a profile's key given twice is refused as a kind
    file's is (it kept the last one)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(9))
    says = r"bomb\.yaml: line 1: invalid YAML: the document expands to more than 100,000 values"
    with pytest.raises(KindFileError, match=says):
        load_file(path)
    with pytest.raises(ProfileError, match="the document expands to more than 100,000 values"):
        load_profile_file(path)
    small = tmp_path / "small.yaml"
    small.write_text(_alias_bomb(3))  # 729 strings: read, then refused by the schema
    with pytest.raises(KindFileError, match="display_name: Input should be a valid string"):
        load_file(small)
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: a\nformat: json\nname: b\n")
    with pytest.raises(ProfileError, match=r"line 3, column 1: key 'name' is given twice"):
        load_profile_file(twice)


@pytest.mark.parametrize(
    ("suffix", "value"),
    [(".yaml", '"Pump\\0"'), (".json", '"Pump\\u0000"'), (".json", '"Pump\\ud800"')],
)
def test_definition_files_with_text_postgresql_cannot_store_are_clear_errors(
    tmp_path: Path, suffix: str, value: str
) -> None:
    """A NUL character (or a lone surrogate) in a kind or profile file's text: the file's
    error, naming the field; it reached PostgreSQL from ``kinds apply`` (a traceback) and
    from ``profiles apply`` ("unnamed portal parameter $3")."""
    for loader, error, field in (
        (load_file, KindFileError, "display_name"),
        (load_profile_file, ProfileError, "description"),
    ):
        path = tmp_path / f"x{suffix}"
        path.write_text(f'{{"{field}": {value}}}' if suffix == ".json" else f"{field}: {value}")
        with pytest.raises(error, match=rf"^{re.escape(str(path))}: {field}: text may not"):
            loader(path)


def test_a_kind_file_that_is_not_utf8_is_named_by_line_and_byte(tmp_path: Path) -> None:
    """As a history file's is (it said "byte 180": an offset read as a byte value)."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: pump\ndisplay_name: Pompe centrifug\xe9e\n")
    with pytest.raises(KindFileError, match=r"latin1\.yaml: line 2: not UTF-8 text \(byte 0xe9\)$"):
        load_file(path)
