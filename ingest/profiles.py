"""Payload profiles: how ingest reads a device family's messages without code.

A profile is a document (YAML or JSON, or the same over the API) that says where the asset,
the time and each metric are in a message, how to rename and convert each metric (scale and
offset, e.g. °F → °C or psi → kPa), how time is written (RFC 3339, epoch seconds or
milliseconds, or a cycle counter on a time base), where a batch's array is, and for text rows
(CSV or whitespace-separated) which column is which, in a wide layout (one column per metric)
or a long one (metric name and value columns). Sparkplug B profiles map (group, edge node,
device, metric name) to (device, asset, metric) (format ``sparkplug_b``; ``sparkplug`` is
read as the same); their sessions and payloads are in ``ingest.sparkplug``.

``compile_profile`` turns a checked document into a :class:`CompiledProfile` whose
``read_message`` gives, for every reading of a message, either (asset, epoch µs, metrics) or a
(reason, detail) problem; the pipeline's validation does the rest exactly as for the native
format. No SQL and no MQTT here.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fleetcare.errors import Invalid
from fleetcare.inputs import unstorable_text_in
from fleetcare.yamltext import load_yaml
from ingest.csv_rows import Unreadable, numbered_csv_rows
from ingest.schemas import QuarantineReason
from ingest.times import as_number, auto_us, epoch_us, rfc3339_us, scaled_us

R = QuarantineReason
NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
TimeFormat = Literal["auto", "rfc3339", "epoch_s", "epoch_ms", "cycle"]
Format = Literal["json", "csv", "text", "sparkplug_b"]
SPARKPLUG = "sparkplug_b"


class ProfileError(Invalid):
    """A profile document that cannot be used: names the file, the field and what is wrong
    (and, when the document's shape is wrong, ``problems``: each field with its problem, which
    the API renders as the problem document's ``problems``)."""

    def __init__(self, detail: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.problems = problems or []


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class TimeSpec(_Doc):
    """Where the time is and how it is written."""

    field: str = Field(min_length=1, max_length=200, description="path (JSON) or column (rows)")
    format: TimeFormat = Field(
        default="auto",
        description="auto (integer epoch ms or RFC 3339), rfc3339, epoch_s, epoch_ms, or cycle",
    )
    origin: datetime | None = Field(default=None, description="cycle only: the time of cycle 0")
    step_s: float | None = Field(
        default=None, gt=0, le=10 * 365 * 86_400, description="cycle only: seconds per cycle"
    )

    @model_validator(mode="after")
    def _cycle_needs_a_base(self) -> TimeSpec:
        if self.format == "cycle":
            if self.origin is None or self.step_s is None:
                raise ValueError('format "cycle" needs "origin" and "step_s" (the time base)')
            if self.origin.tzinfo is None:
                raise ValueError('"origin" needs a UTC offset, e.g. 2020-01-01T00:00:00Z')
        elif self.origin is not None or self.step_s is not None:
            raise ValueError('"origin" and "step_s" belong to format "cycle" only')
        return self


class MetricMap(_Doc):
    """One metric of the kind: where its value is and how to convert it (value*scale+offset)."""

    field: str = Field(
        min_length=1,
        max_length=200,
        description="path (JSON), column (wide rows) or metric name in the file (long rows)",
    )
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _finite(self) -> MetricMap:
        if not (math.isfinite(self.scale) and math.isfinite(self.offset)) or self.scale == 0:
            raise ValueError("scale must be finite and non-zero, offset finite")
        return self


# a Sparkplug id is one MQTT topic level: no '/', no wildcard, no space
_SPARKPLUG_ID = r"^[^/+#\s]{1,200}$"


class SparkplugMetric(_Doc):
    """A Sparkplug B metric name → (asset, metric), with an optional conversion."""

    asset: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    metric: str = Field(min_length=1, max_length=64)
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _finite(self) -> SparkplugMetric:
        if not (math.isfinite(self.scale) and math.isfinite(self.offset)) or self.scale == 0:
            raise ValueError("scale must be finite and non-zero, offset finite")
        return self


class SparkplugDevice(_Doc):
    """One Sparkplug device (or the edge node itself, device "") of one edge node."""

    group: str = Field(pattern=_SPARKPLUG_ID)
    edge_node: str = Field(pattern=_SPARKPLUG_ID)
    device: str = Field(
        default="", pattern=r"^$|" + _SPARKPLUG_ID, description='"" for the node\'s own metrics'
    )
    fleetcare_device: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="the fleetcare device ref"
    )
    metrics: dict[str, SparkplugMetric] = Field(min_length=1)


class ProfileDocument(_Doc):
    """A payload profile as written in its file (or posted to ``/v1/profiles``)."""

    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=1000)
    format: Format
    topic: str | None = Field(
        default=None,
        max_length=200,
        description="MQTT topic pattern with one {device} segment, e.g. acme/pumps/{device}/up",
    )
    # json and rows
    batch: str | None = Field(default=None, max_length=200, description="path of a batch array")
    asset: str | None = Field(default=None, max_length=200, description="path or column")
    asset_prefix: str = Field(default="", max_length=32, description="prefixed to asset ids")
    time: TimeSpec | None = None
    metrics: dict[str, MetricMap] = Field(default_factory=dict, description="kind metric → map")
    # rows
    columns: list[str] | None = Field(default=None, description="column names, in order")
    header: bool = Field(default=False, description="the first line names the columns")
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="csv only")
    layout: Literal["wide", "long"] = "wide"
    metric_column: str | None = Field(default=None, description="long layout: the metric name")
    value_column: str | None = Field(default=None, description="long layout: the value")
    # sparkplug_b
    sparkplug: list[SparkplugDevice] | None = None
    # positions of carriers (ingest.positions): "asset" is then the carrier's ref, "metrics"
    # map latitude and longitude, "station" the station's (site's) ref
    carries: Literal["readings", "positions"] = "readings"
    station: str | None = Field(default=None, max_length=200, description="positions: path")

    @field_validator("format", mode="before")
    @classmethod
    def _sparkplug_alias(cls, value: object) -> object:
        return SPARKPLUG if value == "sparkplug" else value

    @model_validator(mode="after")
    def _consistent(self) -> ProfileDocument:
        if self.topic is not None:
            if self.topic.count("{device}") != 1 or "#" in self.topic or "+" in self.topic:
                raise ValueError('"topic" needs exactly one {device} segment and no wildcards')
            if any(p != "{device}" and "{device}" in p for p in self.topic.split("/")):
                raise ValueError('"topic": {device} must be a whole topic level')
        if self.carries == "positions" and (
            self.format != "json"
            or set(self.metrics) - {"latitude", "longitude"}
            or len(self.metrics) == 1
            or not (self.metrics or self.station)
        ):
            raise ValueError('"carries: positions" is json, with "metrics" latitude and '
                             'longitude (both, or neither and a "station")')  # fmt: skip
        if self.station is not None and self.carries != "positions":
            raise ValueError('"station" belongs to "carries: positions"')
        if self.format == SPARKPLUG:
            if not self.sparkplug:
                raise ValueError('format "sparkplug_b" needs "sparkplug" (the mapping)')
            if self.topic is not None:
                raise ValueError('"topic" does not apply to sparkplug_b (topics are spBv1.0/...)')
            seen = set()
            for dev in self.sparkplug:
                key = (dev.group, dev.edge_node, dev.device)
                if key in seen:
                    raise ValueError(f"sparkplug: {'/'.join(key).rstrip('/')} is mapped twice")
                seen.add(key)
            return self
        if self.sparkplug is not None:
            raise ValueError('"sparkplug" belongs to format "sparkplug_b" only')
        if not self.asset:
            raise ValueError('"asset" is required (where the asset id is)')
        if self.time is None:
            raise ValueError('"time" is required (where the time is and how it is written)')
        if not self.metrics and self.carries == "readings":
            raise ValueError('"metrics" is required: at least one kind metric and its field')
        if self.format == "json":
            if self.columns or self.header or self.layout != "wide":
                raise ValueError('"columns", "header" and "layout" belong to csv/text profiles')
            return self
        if self.batch is not None:
            raise ValueError('"batch" belongs to json profiles')
        if not self.header and not self.columns:
            raise ValueError('rows need "columns" (names in order) or "header": true')
        if self.layout == "long":
            if not self.metric_column or not self.value_column:
                raise ValueError('layout "long" needs "metric_column" and "value_column"')
        elif self.metric_column or self.value_column:
            raise ValueError('"metric_column"/"value_column" belong to layout "long"')
        if self.columns:
            if len(set(self.columns)) != len(self.columns):
                raise ValueError('"columns" has a name twice')
            needed = [self.asset, self.time.field]
            if self.layout == "long":
                needed += [self.metric_column or "", self.value_column or ""]
            else:
                needed += [m.field for m in self.metrics.values()]
            missing = [c for c in needed if c not in self.columns]
            if missing:
                raise ValueError(f"fields not among the columns: {', '.join(missing)}")
        return self


def _location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def parse_profile(data: object, source: str) -> ProfileDocument:
    """Check a profile document; ProfileError names ``source``, the field and what is wrong."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile is a mapping (YAML/JSON object)")
    if (unstorable := unstorable_text_in(data)) is not None:
        raise ProfileError(f"{source}: {unstorable[0]}: {unstorable[1]}", [unstorable])
    try:
        return ProfileDocument.model_validate(data)
    except ValidationError as exc:
        problems = [(_location(e["loc"]), str(e["msg"])) for e in exc.errors()]
        said = "; ".join(f"{field}: {problem}" for field, problem in problems[:5])
        raise ProfileError(f"{source}: {said}", problems) from None


def load_profile_file(path: Path) -> ProfileDocument:
    """Read a profile from a YAML or JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read ({exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except (ValueError, RecursionError) as exc:  # bad JSON, nested too deep, too many digits
        raise ProfileError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}"[:300]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProfileError(f"{path}: not valid YAML: {where}{problem}") from None
    return parse_profile(data, str(path))


def check_metrics(doc: ProfileDocument, kind_metrics: dict[str, set[str]]) -> None:
    """Refuse a profile that names a metric no kind has (the kinds of the database)."""
    named = set(doc.metrics) if doc.carries == "readings" else set()
    for dev in doc.sparkplug or []:
        named |= {m.metric for m in dev.metrics.values()}
    known = set().union(*kind_metrics.values()) if kind_metrics else set()
    unknown = sorted(named - known)
    if unknown:
        raise ProfileError(f"profile {doc.name}: metrics: no kind has {', '.join(unknown)}")


# --- reading messages -----------------------------------------------------------------------

# What reading one record gives: (asset ref, epoch µs, {metric: value}) or a problem.
Good = tuple[str, int, dict[str, Any]]
Problem = tuple[QuarantineReason, str]
Item = Good | Problem
_MISSING = object()


def _path(text: str) -> tuple[str | int, ...]:
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if type(part) is int:
            if type(doc) is not list or part >= len(doc):
                return _MISSING
            doc = doc[part]
        else:
            if type(doc) is not dict:
                return _MISSING
            doc = doc.get(part, _MISSING)
            if doc is _MISSING:
                return doc
    return doc


def time_reader(spec: TimeSpec) -> Callable[[Any], int | None]:
    """A function from the raw time value to epoch µs (None when it cannot be read)."""
    fmt = spec.format
    if fmt == "rfc3339":
        return rfc3339_us
    if fmt == "epoch_s":
        return scaled_us(1e6)
    if fmt == "epoch_ms":
        return scaled_us(1e3)
    if fmt == "cycle":
        assert spec.origin is not None and spec.step_s is not None
        return scaled_us(spec.step_s * 1e6, epoch_us(spec.origin))
    return auto_us


def _flat_key(path: tuple[str | int, ...]) -> str | None:
    """The key of a one-level path, for a plain dictionary lookup; None for deeper paths."""
    return path[0] if len(path) == 1 and type(path[0]) is str else None


@dataclass(frozen=True)
class _Conversion:
    name: str
    scale: float
    offset: float

    @property
    def identity(self) -> bool:
        """No conversion (the value is stored as sent)."""
        return self.scale == 1.0 and self.offset == 0.0

    def apply(self, value: Any) -> Any:
        """The converted number; a value that is not a number is handed on for validation."""
        t = type(value)
        if t is float or t is int:
            if self.scale == 1.0 and self.offset == 0.0:
                return value
            return value * self.scale + self.offset
        if t is str:
            number = as_number(value)
            if number is not None:
                return number * self.scale + self.offset
        return value


class CompiledProfile:
    """A checked profile, ready to read messages (JSON or text rows)."""

    def __init__(self, doc: ProfileDocument) -> None:
        self.doc = doc
        self.name = doc.name
        self.format = doc.format
        assert doc.time is not None and doc.asset is not None
        self.read_time = time_reader(doc.time)
        self.time_label = doc.time.field
        self.asset_label = doc.asset
        self.prefix = doc.asset_prefix
        self._batch = _path(doc.batch) if doc.batch else None
        self._asset = _path(doc.asset)
        self._time = _path(doc.time.field)
        conversions = {n: _Conversion(n, m.scale, m.offset) for n, m in doc.metrics.items()}
        self._metrics = [(_path(m.field), conversions[n]) for n, m in doc.metrics.items()]
        self._asset_key = _flat_key(self._asset)
        self._time_key = _flat_key(self._time)
        self._metric_keys = [(_flat_key(p), p, c) for p, c in self._metrics]
        # long rows: the file's metric name → conversion
        self.by_file_name = {m.field: conversions[n] for n, m in doc.metrics.items()}

    # -- JSON ----------------------------------------------------------------------------------

    def read_json(self, payload: bytes, max_readings: int) -> list[Item] | Problem:
        """Every reading of a JSON message, or one problem for the whole message."""
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return R.BAD_JSON, f"profile {self.name}: {str(exc)[:200]}"
        if self._batch is not None:
            records = _get(doc, self._batch)
            if type(records) is not list:
                return (
                    R.BAD_STRUCTURE,
                    f"profile {self.name}: no array at {self.doc.batch!r}",
                )
        else:
            records = [doc]
        if len(records) > max_readings:
            return R.TOO_MANY_READINGS, f"{len(records)} readings > {max_readings}"
        many = len(records) > 1
        read = self._read_record
        return [read(record, index, many) for index, record in enumerate(records)]

    def _where(self, index: int, many: bool) -> str:
        return f"{self.doc.batch}[{index}]" if many else "reading"

    def _read_record(self, record: Any, index: int, many: bool) -> Item:
        # one-level paths (the usual case) are a dictionary lookup, deeper ones a walk
        flat = type(record) is dict
        key = self._asset_key
        asset = record.get(key, _MISSING) if flat and key is not None else _get(record, self._asset)
        if type(asset) is not str:
            if type(asset) is not int:
                where = self._where(index, many)
                return R.BAD_STRUCTURE, f"{where}: no asset id (string) at {self.asset_label!r}"
            asset = str(asset)
        elif not asset:
            where = self._where(index, many)
            return R.BAD_STRUCTURE, f"{where}: no asset id (string) at {self.asset_label!r}"
        key = self._time_key
        raw_time = (
            record.get(key, _MISSING) if flat and key is not None else _get(record, self._time)
        )
        if raw_time is _MISSING:
            return R.BAD_TIMESTAMP, f"{self._where(index, many)}: no time at {self.time_label!r}"
        ts_us = self.read_time(raw_time)
        if ts_us is None:
            return (
                R.BAD_TIMESTAMP,
                f"{self._where(index, many)}: {self.time_label} = {str(raw_time)[:64]!r} is not "
                f"{self.doc.time.format if self.doc.time else 'a time'}",
            )
        metrics: dict[str, Any] = {}
        for key, path, conv in self._metric_keys:
            value = record.get(key, _MISSING) if flat and key is not None else _get(record, path)
            if value is not _MISSING:
                t = type(value)
                if t is float or t is int:
                    metrics[conv.name] = (
                        value if conv.identity else value * conv.scale + conv.offset
                    )
                else:
                    metrics[conv.name] = conv.apply(value)
        if not metrics:
            where = self._where(index, many)
            return R.BAD_STRUCTURE, f"{where}: none of the profile's metric fields is present"
        return self.prefix + asset, ts_us, metrics

    # -- text rows -----------------------------------------------------------------------------

    def split_lines(
        self, lines: Iterable[str], unreadable: Unreadable | None = None
    ) -> Iterator[list[str]]:
        """Fields of each non-empty line (CSV with the profile's delimiter: ``csv_rows``)."""
        for _, fields in self.numbered_lines(lines, unreadable):
            yield fields

    def numbered_lines(
        self, lines: Iterable[str], unreadable: Unreadable | None = None
    ) -> Iterator[tuple[int, list[str]]]:
        """``split_lines`` with each row's line number in the message (blank lines counted)."""
        if self.format == "csv":
            yield from numbered_csv_rows(lines, self.doc.delimiter, unreadable)
        else:
            for number, line in enumerate(lines, start=1):
                fields = line.split()
                if fields:
                    yield number, fields

    def row_reader(self, header: Sequence[str] | None) -> RowReader:
        """A reader of rows whose columns are ``header`` (or the profile's ``columns``)."""
        names = list(header) if header is not None else list(self.doc.columns or [])
        return RowReader(self, names)

    def read_text(self, payload: bytes, max_readings: int) -> list[Item] | Problem:
        """Every reading of a message of text rows, or one problem for the whole message."""
        read = self.read_text_lines(payload, max_readings)
        return read if type(read) is tuple else read[0]  # type: ignore[return-value]

    def read_text_lines(
        self, payload: bytes, max_readings: int
    ) -> tuple[list[Item], list[str]] | Problem:
        """``read_text`` with where each item is in the message (``line 7``)."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return R.BAD_ENCODING, f"not UTF-8: {exc.reason} at byte {exc.start}"
        out: list[Item] = []  # newline=None: lines may end in CR, LF or both
        labels: list[str] = []

        def unreadable(line: int, why: str) -> None:
            out.append((R.BAD_STRUCTURE, f"line {line}: {why}"))
            labels.append(f"line {line}")

        rows = self.numbered_lines(io.StringIO(text, newline=None), unreadable)
        header = None
        if self.doc.header:
            header = next(rows, (0, None))[1]
            if header is None:
                return R.BAD_STRUCTURE, f"profile {self.name}: no header line"
        try:
            reader = self.row_reader(header)
        except ProfileError as exc:
            return R.BAD_STRUCTURE, exc.detail
        for line_no, fields in rows:
            if len(out) >= max_readings:
                return R.TOO_MANY_READINGS, f"more than {max_readings} rows"
            read = reader.read(fields, f"line {line_no}")
            out.extend(read)
            labels.extend([f"line {line_no}"] * len(read))
        return out, labels

    def read_message(self, payload: bytes, max_readings: int) -> list[Item] | Problem:
        """Every reading of one message in this profile's format."""
        if self.format == "json":
            return self.read_json(payload, max_readings)
        return self.read_text(payload, max_readings)


class RowReader:
    """Reads the rows of one file or message, once its column names are known."""

    def __init__(self, profile: CompiledProfile, names: Sequence[str]) -> None:
        doc = profile.doc
        index = {name: i for i, name in enumerate(names)}

        def column(name: str | None, what: str) -> int:
            if name is None or name not in index:
                said = "is not among"
            elif names.count(name) > 1:  # which of them holds the values is anybody's guess
                said = "is named twice among"
            else:
                return index[name]
            raise ProfileError(
                f"profile {doc.name}: {what} column {name!r} {said} the columns "
                f"({', '.join(names[:30])})"
            )

        self.profile = profile
        self.width = len(names)
        self.asset = column(doc.asset, "asset")
        assert doc.time is not None
        self.time = column(doc.time.field, "time")
        self.long = doc.layout == "long"
        if self.long:
            self.metric_col = column(doc.metric_column, "metric")
            self.value_col = column(doc.value_column, "value")
            self.wide: list[tuple[int, _Conversion]] = []
        else:
            self.wide = [
                (column(m.field, f"metric {name}"), _Conversion(name, m.scale, m.offset))
                for name, m in doc.metrics.items()
            ]

    def read(self, fields: Sequence[str], where: str) -> list[Item]:
        """The reading of one row (wide: one reading; long: one metric of one reading)."""
        p = self.profile
        if len(fields) != self.width:
            return [(R.BAD_STRUCTURE, f"{where}: {len(fields)} columns, expected {self.width}")]
        asset = fields[self.asset]
        if not asset:
            return [(R.BAD_STRUCTURE, f"{where}: empty asset id")]
        raw_time = fields[self.time]
        ts_us = p.read_time(raw_time)
        if ts_us is None:
            return [(R.BAD_TIMESTAMP, f"{where}: {p.time_label} = {raw_time[:64]!r} unreadable")]
        if self.long:
            conv = p.by_file_name.get(fields[self.metric_col])
            if conv is None:
                name = fields[self.metric_col][:64]
                return [(R.UNKNOWN_METRIC, f"{where}: the profile maps no metric {name!r}")]
            value = conv.apply(fields[self.value_col])
            return [(p.prefix + _asset_id(asset), ts_us, {conv.name: value})]
        metrics = {conv.name: conv.apply(fields[i]) for i, conv in self.wide if fields[i] != ""}
        return [(p.prefix + _asset_id(asset), ts_us, metrics)]


_INTEGRAL = re.compile(r"^[0-9]+\.0*$")


def _asset_id(text: str) -> str:
    """``7`` for a unit number written ``7.0`` (spreadsheets do that)."""
    return text.split(".", 1)[0] if _INTEGRAL.match(text) else text


def compile_profile(doc: ProfileDocument) -> CompiledProfile:
    """The reader of a checked profile (json, csv or text; Sparkplug has its own)."""
    if doc.format == SPARKPLUG or doc.carries == "positions":
        raise ProfileError(f"profile {doc.name} does not carry readings of a message format")
    return CompiledProfile(doc)
