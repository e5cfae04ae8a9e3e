"""History import: lifetimes and backfill through a profile, broken rows, duplicate imports,
CSV/text/Parquet, and assets of another customer or kind."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import Connection

from fleet import service as fleet
from fleet.schemas import AssetCreate
from fleetcare.db import connect
from fleetcare.errors import Invalid
from ingest import profile_service
from ingest.history import import_history
from ingest.history_files import whitespace_to_fields
from ingest.profiles import ProfileError, compile_profile, parse_profile
from tests.ingest_helpers import OPERATOR

ORIGIN = datetime(2020, 1, 1, tzinfo=UTC)
ROWS: dict[str, Any] = {
    "name": "engine-rows",
    "format": "text",
    "columns": ["unit", "cycle", "t24", "t50"],
    "asset": "unit",
    "time": {"field": "cycle", "format": "cycle", "origin": ORIGIN.isoformat(), "step_s": 3600},
    "metrics": {
        "flight_cycles": {"field": "cycle"},
        "t24_r": {"field": "t24"},
        "t50_r": {"field": "t50"},
    },
}


def text_file(path: Path, units: dict[int, int]) -> Path:
    lines = []
    for unit, cycles in units.items():
        lines += [f"{unit} {c} {600 + c * 0.1:.2f} {1400 + c:.1f}  " for c in range(1, cycles + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(conn: Connection[Any], customer: int, paths: list[Path], **kw: Any) -> Any:
    profile = compile_profile(parse_profile(kw.pop("doc", ROWS), "test"))
    return import_history(
        conn,
        customer_id=customer,
        kind=kw.pop("kind", "engine"),
        profile=profile,
        paths=paths,
        mode=kw.pop("mode", "lifetimes"),
        **kw,
    )


@pytest.fixture
def auto(db_url: str) -> Any:
    with connect(db_url, autocommit=True) as c:
        yield c


def test_lifetimes_import_creates_assets_and_lives_and_is_idempotent(
    auto: Connection[Any], tmp_path: Path
) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    path = text_file(tmp_path / "train.txt", {1: 30, 2: 45, 10: 12})
    report = run(auto, acme.id, [path])
    assert (report.rows_read, report.rows_rejected, report.values_rejected) == (87, 0, 0)
    assert report.values_stored == 87 * 3 and report.values_duplicate == 0
    assert (report.assets, report.assets_created, report.lives_recorded) == (3, 3, 3)
    lives = auto.execute(
        "SELECT a.ref, l.component, l.started_at, l.ended_at, l.end_reason, l.usage_at_end,"
        " a.renewed_at FROM asset_lives l JOIN assets a ON a.id = l.asset_id ORDER BY a.ref"
    ).fetchall()
    hour = timedelta(hours=1)
    assert [lf[:6] for lf in lives] == [
        ("1", "hpc_module", ORIGIN + hour, ORIGIN + 30 * hour, "failure", 30.0),
        ("10", "hpc_module", ORIGIN + hour, ORIGIN + 12 * hour, "failure", 12.0),
        ("2", "hpc_module", ORIGIN + hour, ORIGIN + 45 * hour, "failure", 45.0),
    ]
    assert [lf[6] for lf in lives] == [lf[3] for lf in lives]  # renewed when the life ended
    again = run(auto, acme.id, [path])
    assert (again.values_stored, again.values_duplicate) == (0, 87 * 3)
    assert (again.assets_created, again.lives_recorded) == (0, 0)
    assert auto.execute("SELECT count(*) FROM telemetry").fetchone() == (87 * 3,)


def test_broken_rows_are_rejected_with_reasons_and_good_ones_kept(
    auto: Connection[Any], tmp_path: Path
) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    path = tmp_path / "broken.txt"
    path.write_text(
        "1 1 600.1 1401\n"
        "1 2 600.2\n"  # a column short
        "1 x 600.3 1403\n"  # cycle not a number
        "1 4 hot 1404\n"  # t24 not a number
        "1 5 5000 1405\n"  # t24 out of bounds
        "bad/id 6 600 1400\n"  # an id the asset registry refuses
        "1 7 600.7 1407\n"
    )
    report = run(auto, acme.id, [path], mode="in-service")
    assert report.rows_read == 7
    assert report.reasons == {
        "bad_structure": 1,
        "bad_timestamp": 1,
        "not_a_number": 1,
        "out_of_bounds": 1,
        "bad_asset_id": 1,
    }
    assert "2 columns" not in report.examples["bad_structure"]  # a row of 3 columns
    assert "broken.txt:2: 3 columns, expected 4" in report.examples["bad_structure"]
    assert (
        "broken.txt:3: cycle = 'x' is not a time of format cycle"
        in report.examples["bad_timestamp"]
    )
    assert "broken.txt:4: t24 = 'hot' is not a number" in report.examples["not_a_number"]
    assert "broken.txt:5: t24_r = 5000 outside [300, 1000]" in report.examples["out_of_bounds"]
    assert report.examples["bad_asset_id"].startswith("broken.txt:6: asset id 'bad/id'")
    # rows 1, 4, 5, 7 are stored (without their rejected values): 3 + 2 + 2 + 3 values
    assert report.values_stored == 10
    row = auto.execute(
        "SELECT s.usage_counter, s.last_seen_at, a.renewed_at"
        " FROM assets a JOIN asset_seen s ON s.asset_id = a.id WHERE a.ref = '1'"
    ).fetchone()
    assert row == (7.0, ORIGIN + timedelta(hours=7), ORIGIN + timedelta(hours=1))


def test_numbers_with_underscores_or_other_scripts_digits_are_rejected_where_they_are(
    auto: Connection[Any], tmp_path: Path
) -> None:
    # Python's float() reads "6_00.2" as 600.2 and full-width digits as ASCII ones
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    path = tmp_path / "odd.txt"
    path.write_text(
        "1 1 600.1 1400\n1 2 6_00.2 1401\n1 3 600.3 \uff11\uff14\uff10\uff13\n1 4 600.4 1404\n"
    )
    report = run(auto, acme.id, [path])
    assert report.reasons == {"not_a_number": 2} and report.values_rejected == 2
    assert report.examples["not_a_number"] == (
        "odd.txt:2: t24 = '6_00.2' is not a number (t24_r) (digit-group underscores are not read)"
    )
    assert report.values_stored == 4 * 3 - 2  # the good values of the same rows are kept
    with pytest.raises(Invalid) as stopped:
        run(auto, acme.id, [_only(path, 3)], strict=True)
    assert "odd3.txt:1: t50 = '\uff11\uff14\uff10\uff13' is not a number" in stopped.value.detail
    assert "(only ASCII digits 0-9 are read)" in stopped.value.detail


def _only(path: Path, line: int) -> Path:
    out = path.with_name(f"{path.stem}{line}{path.suffix}")
    out.write_text(path.read_text().splitlines()[line - 1] + "\n")
    return out


def test_conflicting_values_of_one_reading_are_reported_and_the_first_kept(
    auto: Connection[Any], tmp_path: Path
) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    first = tmp_path / "a.txt"
    first.write_text("1 1 600.1 1400\n1 2 600.2 1401\n")
    assert run(auto, acme.id, [first], mode="in-service").values_stored == 6
    second = tmp_path / "b.txt"
    # line 1: t24 of cycle 1 differs from what a.txt stored; lines 2-3: cycle 2 again, the
    # same values (duplicates); lines 4-5: cycle 5 twice in this file, t50 differing
    second.write_text(
        "1 1 600.9 1400\n1 2 600.2 1401\n1 2 600.2 1401\n1 5 600.5 1405\n1 5 600.5 1406\n"
    )
    report = run(auto, acme.id, [second], mode="in-service")
    assert report.rejected == 0 and report.values_stored == 3
    assert (report.values_conflicting, report.values_duplicate) == (2, 2 * 3 + 3 + 2 - 1)
    assert report.warnings == {"conflicting_value": 2}
    said = report.warning_examples["conflicting_value"]
    assert said.startswith("b.txt:1: t24: asset '1' t24_r at 2020-01-01T01:00:00+00:00 = 600.9")
    assert "differs from 600.1" in said and "stored before" in said
    assert report.as_dict()["warnings"]["conflicting_value"]["count"] == 2
    kept = auto.execute(
        "SELECT t.value FROM telemetry t JOIN metrics m ON m.id = t.metric_id"
        " WHERE m.name IN ('t24_r', 't50_r') ORDER BY t.time, m.name"
    ).fetchall()
    assert [v for (v,) in kept] == [600.1, 1400.0, 600.2, 1401.0, 600.5, 1405.0]
    # a strict import stops at a conflicting value, and stores nothing of its block
    third = tmp_path / "c.txt"
    third.write_text("1 7 600.7 1407\n1 7 600.8 1407\n")
    with pytest.raises(Invalid) as stopped:
        run(auto, acme.id, [third], mode="in-service", strict=True)
    assert stopped.value.detail.startswith("c.txt:2: t24: asset '1' t24_r")
    assert (
        "from c.txt:1" in stopped.value.detail and "nothing of c.txt stored" in stopped.value.detail
    )


def test_csv_long_and_parquet_wide_read_the_same_values(
    auto: Connection[Any], tmp_path: Path
) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    beta = fleet.ensure_customer(auto, "beta", "Beta")
    long_doc = {
        "name": "engine-long",
        "format": "csv",
        "header": True,
        "layout": "long",
        "asset": "engine",
        "asset_prefix": "ESN-",
        "time": {"field": "at", "format": "rfc3339"},
        "metric_column": "sensor",
        "value_column": "reading",
        "metrics": {"t24_r": {"field": "T24_K", "scale": 1.8}, "flight_cycles": {"field": "N"}},
    }
    csv_path = tmp_path / "long.csv"
    csv_path.write_text(
        "engine,at,sensor,reading\n"
        "7,2024-05-01T10:00:00Z,T24_K,350\n"
        "7,2024-05-01T10:00:00Z,N,100\n"
        "7,2024-05-01T11:00:00+01:00,T24_K,351\n"  # the same instant, another value
        "7,2024-05-01T12:00:00Z,EGT,900\n"
        "7,2024-05-01T12:00:00Z,N,102\n"
    )
    got = run(auto, acme.id, [csv_path], doc=long_doc, mode="in-service")
    assert got.reasons == {"unknown_metric": 1}
    # the first value is kept (as ingest keeps the first stored) and the other is reported
    assert got.values_stored == 3 and (got.values_duplicate, got.values_conflicting) == (0, 1)
    assert got.warnings == {"conflicting_value": 1}
    said = got.warning_examples["conflicting_value"]
    assert said.startswith("long.csv:4: reading: asset 'ESN-7' t24_r at 2024-05-01T10:00:00+00:00")
    assert "= 631.8" in said and "differs from 630 " in said and "from long.csv:2" in said
    wide_doc = {
        "name": "engine-wide",
        "format": "csv",
        "header": True,
        "asset": "engine",
        "asset_prefix": "ESN-",
        "time": {"field": "at", "format": "epoch_ms"},
        "metrics": {"t24_r": {"field": "t24_k", "scale": 1.8}, "flight_cycles": {"field": "n"}},
    }
    at = int(datetime(2024, 5, 1, 10, tzinfo=UTC).timestamp() * 1000)
    table = pa.table({"engine": [7, 7], "at": [at, at + 7_200_000], "t24_k": [350.0, None],
                      "n": [100, 102]})  # fmt: skip
    pq.write_table(table, tmp_path / "wide.parquet", row_group_size=1)
    again = run(auto, acme.id, [tmp_path / "wide.parquet"], doc=wide_doc, mode="in-service")
    assert (again.rows_read, again.values_stored, again.values_duplicate) == (2, 0, 3)
    # another customer with the same external ids gets assets of its own
    other = run(auto, beta.id, [tmp_path / "wide.parquet"], doc=wide_doc, mode="in-service")
    assert (other.assets_created, other.values_stored) == (1, 3)
    owners = auto.execute("SELECT customer_id FROM assets WHERE ref = 'ESN-7' ORDER BY 1")
    assert [r[0] for r in owners.fetchall()] == sorted([acme.id, beta.id])


def test_assets_of_another_kind_and_bad_arguments(auto: Connection[Any], tmp_path: Path) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    fleet.create_asset(auto, OPERATOR, AssetCreate(customer_id=acme.id, kind="tire", ref="3"))
    path = text_file(tmp_path / "x.txt", {3: 5, 4: 5})
    report = run(auto, acme.id, [path])
    assert report.reasons == {"wrong_kind": 5}
    assert report.examples["wrong_kind"] == "x.txt:1: asset '3' is a tire, not a engine"
    assert report.lives_recorded == 1
    with pytest.raises(Invalid, match="no such file"):
        run(auto, acme.id, [tmp_path / "missing.txt"])
    with pytest.raises(Invalid, match=rf"^{re.escape(str(tmp_path))}: a directory, not a file$"):
        run(auto, acme.id, [tmp_path])
    with pytest.raises(Invalid, match=r"^/dev/null: not a regular file$"):
        run(auto, acme.id, [Path("/dev/null")])
    with pytest.raises(Invalid, match="no kind 'nope'"):
        run(auto, acme.id, [path], kind="nope")
    with pytest.raises(Invalid, match="elevator has components brake, door_operator; say which"):
        doc = {**ROWS, "metrics": {"trips": {"field": "cycle"}}}
        run(auto, acme.id, [path], kind="elevator", doc=doc)
    with pytest.raises(Invalid, match="engine has no component 'fan'"):
        run(auto, acme.id, [path], component="fan")
    header_doc = {**ROWS, "columns": None, "header": True}
    with pytest.raises(ProfileError, match="asset column 'unit' is not among the columns"):
        run(auto, acme.id, [path], doc=header_doc)


def test_history_import_cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("FLEETCARE_DATABASE_URL", db_url)
    with connect(db_url) as c:
        fleet.ensure_customer(c, "acme", "Acme")
        profile_service.apply_profile(c, OPERATOR, ROWS, source="test")
    path = text_file(tmp_path / "train.txt", {1: 5, 2: 6})
    runner = CliRunner()
    args = ["history", "import", "--customer", "acme", "--kind", "engine"]
    ok = runner.invoke(app, [*args, "--profile", "engine-rows", "--lifetimes", "--json", str(path)])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout.splitlines()[-1])
    assert (report["rows_read"], report["values_stored"], report["lives_recorded"]) == (11, 33, 2)
    assert "history: train.txt: 100.0%" in ok.stderr
    human = runner.invoke(app, [*args, "--profile", "engine-rows", str(path)])
    assert "values stored 0, already stored 33" in human.stdout
    nobody = runner.invoke(app, [*args[:2], "--customer", "nobody", *args[4:], "--profile", "x",
                                 str(path)])  # fmt: skip
    assert nobody.exit_code == 2 and "no live customer 'nobody'" in nobody.output
    noprofile = runner.invoke(app, [*args, "--profile", "nope", str(path)])
    assert noprofile.exit_code == 2 and "no profile 'nope'" in noprofile.output
    broken = tmp_path / "broken.txt"
    broken.write_text("3 1 600.1 1401\n3 2 600.2\n")
    strict = runner.invoke(app, [*args, "--profile", "engine-rows", "--strict", str(broken)])
    assert strict.exit_code == 2
    assert "broken.txt:2: 3 columns, expected 4: '3 2 600.2' (bad_structure)" in strict.output
    lenient = runner.invoke(app, [*args, "--profile", "engine-rows", str(broken)])
    assert lenient.exit_code == 0 and "first: broken.txt:2: 3 columns" in lenient.stdout


def test_upload_route_streams_a_file_per_customer(
    client: Any, operator_headers: dict[str, str], make_tenant: Any, tmp_path: Path
) -> None:
    assert client.post("/v1/profiles", json=ROWS, headers=operator_headers).is_success
    acme, beta = make_tenant("acme"), make_tenant("beta")
    body = text_file(tmp_path / "train.txt", {1: 5, 2: 6}).read_bytes()
    params = {"kind": "engine", "profile": "engine-rows", "filename": "train.txt"}
    got = client.post(
        "/v1/history/import",
        params={**params, "customer_id": acme.customer.id, "mode": "lifetimes"},
        content=body,
        headers=operator_headers,
    )
    assert got.status_code == 200, got.text
    report = got.json()
    assert (report["rows_read"], report["values_stored"], report["lives_recorded"]) == (11, 33, 2)
    assert report["files"] == ["train.txt"]
    # acme's own key, the same file: nothing new
    again = client.post("/v1/history/import", params=params, content=body, headers=acme.headers)
    assert (again.json()["values_stored"], again.json()["values_duplicate"]) == (0, 33)
    # beta's key naming acme: not found; beta's own import makes beta's own assets
    other = {**params, "customer_id": acme.customer.id}
    assert client.post("/v1/history/import", params=other, content=body,
                       headers=beta.headers).status_code == 404  # fmt: skip
    mine = client.post("/v1/history/import", params=params, content=body, headers=beta.headers)
    assert (mine.json()["assets_created"], mine.json()["values_stored"]) == (2, 33)
    tech = make_tenant("acme", role="technician")
    assert client.post("/v1/history/import", params=params, content=body,
                       headers=tech.headers).status_code == 403  # fmt: skip
    bad = client.post("/v1/history/import", params={**params, "filename": "x.xlsx"},
                      content=body, headers=acme.headers)  # fmt: skip
    assert bad.status_code == 422 and "suffix" in bad.json()["detail"]
    nope = client.post("/v1/history/import", params={**params, "profile": "nope"},
                       content=body, headers=acme.headers)  # fmt: skip
    assert nope.status_code == 404
    # a header line (it crashed the import: 500) is a rejected row named by the upload's
    # name and line; an empty body is a 422 that names no server path
    headed = client.post("/v1/history/import", params=params, headers=acme.headers,
                         content=b"unit cycle t24 t50\n" + body)  # fmt: skip
    assert headed.status_code == 200, headed.text
    assert headed.json()["rejected"]["bad_timestamp"]["first"].startswith(
        "train.txt:1: cycle = 'cycle' is not a time of format cycle (a header line?"
    )
    empty = client.post("/v1/history/import", params=params, content=b"", headers=acme.headers)
    assert empty.status_code == 422 and empty.json()["detail"] == "train.txt: empty file"
    long_name = {**params, "filename": "é" * 190 + ".txt"}  # 384 bytes: no file name
    named = client.post("/v1/history/import", params=long_name, content=body, headers=acme.headers)
    assert named.status_code == 200 and named.json()["files"] == [long_name["filename"]]


def _fields_per_line(data: bytes) -> list[bytes]:
    """What whitespace_to_fields stands for: each line's fields, as bytes.split sees them."""
    return [b"\t".join(line.split()) for line in data.splitlines()]


@pytest.mark.parametrize("seed", range(5))
def test_whitespace_becomes_the_fields_python_splits(seed: int) -> None:
    """Text rows become tab-separated rows with exactly the fields ``bytes.split`` finds on each
    line (runs of spaces, tabs, vertical tabs and form feeds; CR, LF and CRLF line ends; empty
    and blank lines; commas and other bytes kept as they are, inside their fields)."""
    rng = random.Random(seed)
    alphabet = [b" ", b"  ", b"\t", b"\x0b", b"\x0c", b"\r", b"\n", b"\r\n", b"7", b"x", b",",
                b"\x1c", b"\xc3\xa9", b"-1.5e3"]  # fmt: skip
    for _ in range(3000):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        ours = [line for line in whitespace_to_fields(data).split(b"\n") if line]
        assert ours == [line for line in _fields_per_line(data) if line], data


def test_whitespace_of_a_cmapss_file_becomes_its_fields() -> None:
    sample = b"1 1 -0.0007 -0.0004 100.0 518.67 641.82  \n1 2 0.0019 -0.0003 100.0 518.67  \n"
    assert whitespace_to_fields(sample) == (
        b"1\t1\t-0.0007\t-0.0004\t100.0\t518.67\t641.82\n1\t2\t0.0019\t-0.0003\t100.0\t518.67\n"
    )


CLEAN = "1 1 600.1 1401\n1 2 600.2 1402\n1 3 600.3 1403\n"


@pytest.mark.parametrize(
    ("text", "reason", "said"),
    [
        ("unit cycle t24 t50\n" + CLEAN, "bad_timestamp",
         "x.txt:1: cycle = 'cycle' is not a time of format cycle (a header line? profile"),
        ("1 1 600.1 1401\n\n   \n1 2 600.2\n1 3 600.3 1403\n", "bad_structure",
         "x.txt:4: 3 columns, expected 4: '1 2 600.2'"),
        ("1 1 600.1 1401\n1 2 600.2 1402\n1 3 hot 1403\n", "not_a_number",
         "x.txt:3: t24 = 'hot' is not a number (t24_r)"),
        ("1 1 600.1 1401\r\n1 2 5000 1402\r\n", "out_of_bounds",
         "x.txt:2: t24_r = 5000 outside [300, 1000]"),
        (" \n1 1 600.1 1401\n 2 x 600.2 1402\n", "bad_timestamp",
         "x.txt:3: cycle = 'x' is not a time of format cycle"),
        # a comma or a quote is part of its field, as in a message read by the same profile
        # (they were CSV syntax: 600,2 was two columns, quoted as '1 2 600 2 1402', and a
        # stray quote swallowed the lines after it into one field)
        ("1 1 600.1 1401\n1 2 600,2 1402\n1 3 600.3 1403\n", "not_a_number",
         "x.txt:2: t24 = '600,2' is not a number (t24_r)"),
        ('1 1 600.1 1401\n1 2 "600.2 1402\n1 3 600.3 1403\n', "not_a_number",
         "x.txt:2: t24 = '\"600.2' is not a number (t24_r)"),
    ],
)  # fmt: skip
def test_a_bad_row_is_named_by_file_and_line(
    auto: Connection[Any], tmp_path: Path, text: str, reason: str, said: str
) -> None:
    """Counted with its file and line; with ``strict`` the import stops there and stores
    nothing of the file."""
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    path = tmp_path / "x.txt"
    path.write_text(text, newline="")
    with pytest.raises(Invalid) as stopped:
        run(auto, acme.id, [path], mode="in-service", strict=True)
    assert said in stopped.value.detail and f"({reason}" in stopped.value.detail
    assert "nothing of x.txt stored" in stopped.value.detail
    assert auto.execute("SELECT count(*) FROM telemetry").fetchone() == (0,)
    assert auto.execute("SELECT count(*) FROM assets").fetchone() == (0,)
    report = run(auto, acme.id, [path], mode="in-service")
    assert report.reasons == {reason: 1}
    assert report.examples[reason].startswith(said)
    assert report.values_stored > 0
    # the header's "unit" is no asset: only unit 1 (and 2 in the last case) are
    refs = auto.execute("SELECT ref FROM assets ORDER BY ref").fetchall()
    assert {r[0] for r in refs} <= {"1", "2"}


def test_harmless_variants_read_as_the_clean_file(auto: Connection[Any], tmp_path: Path) -> None:
    """Trailing and doubled spaces, tabs, Windows line ends, a byte order mark, blank lines:
    the same rows as the clean file, nothing rejected."""
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    clean = tmp_path / "clean.txt"
    clean.write_text(CLEAN)
    assert run(auto, acme.id, [clean], mode="in-service").values_stored == 9
    variants = {
        "trailing.txt": CLEAN.replace("\n", "  \n").encode(),
        "double.txt": CLEAN.replace(" ", "  ").encode(),
        "tabs.txt": CLEAN.replace(" ", "\t").encode(),
        "crlf.txt": CLEAN.replace("\n", "\r\n").encode(),
        "bom.txt": b"\xef\xbb\xbf" + CLEAN.encode(),
        "blank-lines.txt": ("\n" + CLEAN.replace("\n", "\n\n")).encode(),
        "no-final-newline.txt": CLEAN.rstrip("\n").encode(),
    }
    for name, data in variants.items():
        path = tmp_path / name
        path.write_bytes(data)
        report = run(auto, acme.id, [path], mode="in-service", strict=True)
        assert (report.rows_read, report.rejected) == (3, 0), name
        assert (report.values_stored, report.values_duplicate) == (0, 9), name
    assert auto.execute("SELECT count(*) FROM assets").fetchone() == (1,)


def test_a_file_without_rows_is_refused(auto: Connection[Any], tmp_path: Path) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"1 1 600.1 1401\n\n1 2 600.2 1402 \xe9\n")
    with pytest.raises(Invalid, match=r"^latin1\.txt:3: not UTF-8 text \(byte 0xe9\)"):
        run(auto, acme.id, [latin1])
    empty, blank = tmp_path / "empty.txt", tmp_path / "blank.txt"
    empty.write_text("")
    blank.write_text("\n  \r\n\n")
    with pytest.raises(Invalid, match=r"empty\.txt: empty file"):
        run(auto, acme.id, [empty])
    with pytest.raises(Invalid, match=r"blank\.txt: no rows"):
        run(auto, acme.id, [blank])


def test_lifetimes_another_fault_ended_are_labelled_so(
    auto: Connection[Any], tmp_path: Path
) -> None:
    acme = fleet.ensure_customer(auto, "acme", "Acme")
    faults = text_file(tmp_path / "faults.txt", {1: 20, 2: 25})
    assert run(auto, acme.id, [faults], cause="other_fault").lives_recorded == 2
    worn = text_file(tmp_path / "worn.txt", {3: 30})
    assert run(auto, acme.id, [worn], cause="confirmed_wear").lives_recorded == 1
    labels = auto.execute(
        "SELECT a.ref, l.outcome FROM asset_lives l JOIN assets a ON a.id = l.asset_id"
        " ORDER BY a.ref"
    ).fetchall()
    # another fault's lives are censored by training; a wear-out counts as every failure did
    assert labels == [("1", "other_fault"), ("2", "other_fault"), ("3", "failure")]
    for refused in ({"mode": "in-service"}, {"end_reason": "replacement"}):
        with pytest.raises(Invalid, match="only lifetimes that end in a failure have a cause"):
            run(auto, acme.id, [worn], cause="other_fault", **refused)
