"""Carriers, what they carry, where they are and go; stations and lanes. No SQL text, no HTTP.

An itinerary arrives as legs keyed by the customer's own leg id: the same leg again updates it
(or changes nothing), a leg id already flying on another carrier is a tail swap, and a
carrier's planned legs from the first uploaded departure on that the upload does not list are
cancelled (the new plan replaces the old one from that point). Every row is checked before
anything is written, and every refusal names its row and field.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from fleet import position_repository as positions
from fleet import service as fleet
from fleet.schemas import Principal
from fleet.service import owner_for, translate_integrity_errors
from fleetcare.errors import Invalid, InvalidRows, NotFound
from kinds.service import get_kind, require_kind
from maintenance.common import Conn
from maintenance.logistics import service as logistics
from maintenance.mobility import repository as repo
from maintenance.mobility.schemas import (
    Carrier,
    CarrierCreate,
    CarrierPosition,
    Lane,
    LaneCreate,
    Leg,
    LegIn,
    LegView,
    Mount,
    MountSet,
    PositionSet,
    Station,
    StationSet,
)

# --- carriers ------------------------------------------------------------------------------


def _site_of(conn: Conn, principal: Principal, owner: int, site_id: int, where: str) -> int:
    site = fleet.get_site(conn, principal, site_id)
    if site.customer_id != owner:
        raise NotFound(f"{where}: site {site_id} not found", code="site_not_found")
    return site.id


def create_carrier(conn: Conn, principal: Principal, body: CarrierCreate) -> Carrier:
    """Register a carrier (an aircraft tail, a truck) for the caller's customer."""
    principal.require("assets:write")
    owner = owner_for(principal, body.customer_id)
    if principal.scope is None:
        fleet.get_customer(conn, principal, owner)
    values = body.model_dump(exclude={"customer_id"}) | {"customer_id": owner}
    if body.home_site_id is not None:
        _site_of(conn, principal, owner, body.home_site_id, "home_site_id")
    with translate_integrity_errors(f"carrier {body.ref!r}"), conn.transaction():
        return repo.CARRIERS.insert(conn, values)


def get_carrier(
    conn: Conn, principal: Principal, carrier_id: int, *, for_update: bool = False
) -> Carrier:
    """A carrier the caller may see (another customer's: 404)."""
    found = repo.CARRIERS.get(conn, carrier_id, scope=principal.scope, for_update=for_update)
    if found is None:
        raise NotFound(f"carrier {carrier_id} not found", code="carrier_not_found")
    return found


def carrier_of(conn: Conn, carrier_id: int) -> Carrier | None:
    """Any customer's carrier, for the policy."""
    return repo.CARRIERS.get(conn, carrier_id, scope=None)


def list_carriers(
    conn: Conn, principal: Principal, *, after: int | None, limit: int
) -> tuple[list[Carrier], int | None]:
    """Carriers the caller may see, one page."""
    return repo.CARRIERS.page(conn, scope=principal.scope, after=after, limit=limit)


def set_position(
    conn: Conn, principal: Principal, carrier_id: int, body: PositionSet, now: datetime
) -> Carrier:
    """Record where a carrier is (coordinates and/or the station it is at)."""
    principal.require("assets:write")
    carrier = get_carrier(conn, principal, carrier_id, for_update=True)
    at_site = None
    if body.station is not None:
        site = fleet.site_by_ref(conn, carrier.customer_id, body.station)
        if site is None:
            raise Invalid(f"station: no site {body.station!r}", code="station_not_found")
        at_site = site.id
    latitude, longitude = body.latitude, body.longitude
    if latitude is None and at_site is not None:
        site_row = fleet.get_site(conn, principal, at_site)
        latitude, longitude = site_row.latitude, site_row.longitude
    # recorded in the history like a device's; the latest unless a newer one is known
    row = positions.PositionRow(
        carrier.id, body.at or now, carrier.customer_id, latitude, longitude, at_site, None, now
    )
    positions.insert_positions(conn, [row], replace=True)
    positions.move_latest(conn, [row], "api")
    positions.prune_positions(conn, [carrier.id], now)
    return get_carrier(conn, principal, carrier.id)


def position_history(
    conn: Conn, principal: Principal, carrier_id: int, *, before: datetime | None, limit: int
) -> list[CarrierPosition]:
    """A carrier's recorded positions (telemetry and API), newest first."""
    carrier = get_carrier(conn, principal, carrier_id)
    return [
        CarrierPosition(**asdict(p))
        for p in positions.position_history(conn, carrier.id, before=before, limit=limit)
    ]


def mount(
    conn: Conn, principal: Principal, carrier_id: int, asset_id: int, body: MountSet
) -> Mount:
    """Put an asset of a mobile kind on a carrier (off any other one)."""
    principal.require("assets:write")
    carrier = get_carrier(conn, principal, carrier_id)
    asset = fleet.get_asset(conn, principal, asset_id)
    if asset.customer_id != carrier.customer_id:
        raise NotFound(f"asset {asset_id} not found", code="asset_not_found")
    if not get_kind(conn, asset.kind).mobile:
        raise Invalid(
            f"asset {asset.ref} is a {asset.kind}, which is not a mobile kind", code="not_mobile"
        )
    return repo.upsert_mount(
        conn,
        {
            "asset_id": asset.id,
            "customer_id": carrier.customer_id,
            "carrier_id": carrier.id,
            "position": body.position,
        },
    )


def unmount(conn: Conn, principal: Principal, carrier_id: int, asset_id: int) -> None:
    """Take an asset off a carrier."""
    principal.require("assets:write")
    carrier = get_carrier(conn, principal, carrier_id)
    if not repo.delete_mount(conn, carrier.id, asset_id):
        raise NotFound(f"asset {asset_id} is not on carrier {carrier.ref}", code="asset_not_found")


def mounts_of(conn: Conn, principal: Principal, carrier_id: int) -> list[Mount]:
    """The assets a carrier holds."""
    return repo.mounts_of(conn, get_carrier(conn, principal, carrier_id).id)


def mount_of(conn: Conn, asset_id: int) -> Mount | None:
    """The carrier an asset rides on, if any."""
    return repo.mount_of(conn, asset_id)


# --- stations and lanes --------------------------------------------------------------------


def set_station(conn: Conn, principal: Principal, site_id: int, body: StationSet) -> Station:
    """Make one of the customer's sites a station, or change what it offers."""
    principal.require("sites:write")
    site = fleet.get_site(conn, principal, site_id)
    for i, kind in enumerate(body.kinds):
        require_kind(conn, kind, where=f"kinds[{i}]")
    for i, pair in enumerate(body.components):
        kind, _, component = pair.partition("/")
        if kind not in body.kinds:
            raise Invalid(f"components[{i}]: {pair!r} must be kind/component of one of kinds")
        names = get_kind(conn, kind).component_names
        if component not in names:
            raise Invalid(
                f"components[{i}]: a {kind} has components {', '.join(names)}, not {component!r}"
            )
    return repo.upsert_station(
        conn, body.model_dump() | {"site_id": site.id, "customer_id": site.customer_id}
    )


def get_station(conn: Conn, principal: Principal, site_id: int) -> Station:
    """A station the caller may see."""
    site = fleet.get_site(conn, principal, site_id)
    found = repo.stations_of(conn, [site.id]).get(site.id)
    if found is None:
        raise NotFound(f"site {site_id} is not a station", code="station_not_found")
    return found


def list_stations(conn: Conn, principal: Principal) -> list[Station]:
    """Stations the caller may see."""
    return repo.list_stations(conn, scope=principal.scope)


def stations_of(conn: Conn, site_ids: list[int]) -> dict[int, Station]:
    """Stations by site id, for planning."""
    return repo.stations_of(conn, site_ids)


def create_lane(conn: Conn, principal: Principal, body: LaneCreate) -> Lane:
    """Open a lane from a depot to a station (operator: it runs the depots)."""
    principal.require("logistics:write")
    logistics.get_depot(conn, body.depot_id)
    site = fleet.get_site(conn, principal, body.site_id)
    if not repo.stations_of(conn, [site.id]):
        raise Invalid(f"site_id: site {site.id} is not a station", code="station_not_found")
    what = f"lane from depot {body.depot_id} to site {site.id}"
    with translate_integrity_errors(what), conn.transaction():
        return repo.insert_lane(conn, body.model_dump() | {"customer_id": site.customer_id})


def list_lanes(
    conn: Conn, principal: Principal, *, after: int | None, limit: int
) -> tuple[list[Lane], int | None]:
    """Lanes into the caller's stations, one page."""
    return repo.LANES.page(conn, scope=principal.scope, after=after, limit=limit)


# --- itineraries ---------------------------------------------------------------------------

CSV_COLUMNS = (
    "leg_id",
    "carrier",
    "from",
    "to",
    "scheduled_departure",
    "scheduled_arrival",
    "estimated_departure",
    "estimated_arrival",
    "stand",
)
MAX_LEGS = 20_000


def parse_upload(content: bytes, content_type: str) -> list[dict[str, Any]]:
    """The rows of a bulk itinerary: a JSON ``{"legs": [...]}`` or a CSV with a header."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        byte = content[exc.start : exc.start + 1].hex()
        raise Invalid(
            f"body: line {line}: not UTF-8 text (byte 0x{byte})", code="invalid_rows"
        ) from exc
    if "\x00" in text:
        raise Invalid("body: contains the NUL character", code="invalid_rows")
    if "csv" in content_type:
        reader = csv.DictReader(io.StringIO(text))
        try:
            return _csv_rows(reader)
        except csv.Error as exc:  # a field past the csv module's limit, a stray quote, ...
            line = reader.reader.line_num  # the DictReader's own count lags a row behind
            where = "header" if line <= 1 else f"rows[{line - 1}]"
            raise InvalidRows(
                f"the CSV cannot be read at line {line}", [(where, str(exc))]
            ) from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"body: not JSON ({exc.msg} at line {exc.lineno})") from exc
    except RecursionError as exc:
        raise Invalid("body: JSON nested too deeply", code="invalid_rows") from exc
    except ValueError as exc:  # an integer of more digits than Python converts
        raise Invalid(f"body: not JSON ({exc})"[:300], code="invalid_rows") from exc
    if not isinstance(document, dict) or not isinstance(document.get("legs"), list):
        raise Invalid('body: expected {"legs": [...]} (or text/csv)', code="invalid_rows")
    if set(document) - {"legs"}:
        raise Invalid(f"body: unknown fields {sorted(set(document) - {'legs'})}")
    return list(document["legs"])


def _csv_rows(reader: csv.DictReader[str]) -> list[dict[str, Any]]:
    header = reader.fieldnames or []
    unknown = [h for h in header if h not in CSV_COLUMNS]
    missing = [h for h in ("leg_id", "carrier", "from", "to") if h not in header]
    twice = sorted({h for h in header if header.count(h) > 1})  # which one is meant?
    if unknown or missing or twice:
        raise InvalidRows(
            "the CSV header does not fit",
            [("header", f"unknown column {h!r}") for h in unknown]
            + [("header", f"missing column {h!r}") for h in missing]
            + [("header", f"column {h!r} is named twice") for h in twice],
        )
    rows: list[dict[str, Any]] = []
    for row in reader:
        if None in row:
            rows.append({"__extra__": row[None]})
            continue
        rows.append({k: v for k, v in row.items() if v not in ("", None)})
    return rows


@dataclass
class _Checked:
    """Validated legs of one upload, with their carriers and stations resolved."""

    legs: list[tuple[int, LegIn, int, int, int]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def _row_name(n: int, *, one_carrier: bool) -> str:
    """How a problem names row ``n`` (from 1): ``rows[N]`` in a bulk upload (the line people
    read), ``legs.I`` (I from 0) in one carrier's itinerary, as the API's body errors do."""
    return f"legs.{n - 1}" if one_carrier else f"rows[{n}]"


def _check_rows(
    conn: Conn, customer_id: int, rows: list[Any], default_carrier: Carrier | None
) -> _Checked:
    """Every row validated and resolved; each problem names its row (:func:`_row_name`)."""
    one = default_carrier is not None
    out = _Checked()
    if len(rows) > MAX_LEGS:
        out.problems.append(("legs", f"at most {MAX_LEGS} legs per upload, not {len(rows)}"))
        return out
    seen: dict[str, int] = {}
    carriers: dict[str, Carrier | None] = {}
    sites: dict[str, int | None] = {}

    def site_id(ref: str) -> int | None:
        if ref not in sites:
            found = fleet.site_by_ref(conn, customer_id, ref)
            sites[ref] = found.id if found is not None and found.retired_at is None else None
        return sites[ref]

    for n, row in enumerate(rows, start=1):
        where = _row_name(n, one_carrier=one)
        if not isinstance(row, dict):
            out.problems.append((where, "a leg is an object"))
            continue
        if "__extra__" in row:
            out.problems.append((where, "more values than columns"))
            continue
        try:
            leg = LegIn.model_validate(row)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err.get("loc", ()))
                out.problems.append((f"{where}.{loc}" if loc else where, str(err.get("msg"))))
            continue
        row_problems: list[tuple[str, str]] = []
        if leg.leg_id in seen:
            row_problems.append(
                (
                    f"{where}.leg_id",
                    f"{leg.leg_id!r} repeats {_row_name(seen[leg.leg_id], one_carrier=one)}",
                )
            )
        else:
            seen[leg.leg_id] = n
        carrier: Carrier | None
        if default_carrier is not None:
            carrier = default_carrier
            if leg.carrier is not None and leg.carrier != default_carrier.ref:
                row_problems.append(
                    (f"{where}.carrier", f"{leg.carrier!r} is not {default_carrier.ref!r}")
                )
        elif leg.carrier is None:
            carrier = None
            row_problems.append((f"{where}.carrier", "required"))
        else:
            if leg.carrier not in carriers:
                carriers[leg.carrier] = repo.find_carrier_by_ref(conn, customer_id, leg.carrier)
            carrier = carriers[leg.carrier]
            if carrier is None or carrier.retired_at is not None:
                row_problems.append((f"{where}.carrier", f"no carrier {leg.carrier!r}"))
        from_id, to_id = site_id(leg.from_station), site_id(leg.to_station)
        if from_id is None:
            row_problems.append((f"{where}.from", f"no site {leg.from_station!r}"))
        if to_id is None:
            row_problems.append((f"{where}.to", f"no site {leg.to_station!r}"))
        if row_problems or carrier is None or from_id is None or to_id is None:
            out.problems.extend(row_problems)
            continue
        out.legs.append((n, leg, carrier.id, from_id, to_id))
    return out


@dataclass(frozen=True)
class ItineraryChange:
    """What an upload wrote, and which carriers' plans changed (to re-plan their orders)."""

    carriers: list[str]
    created: int
    updated: int
    unchanged: int
    cancelled: int
    tail_swaps: int
    changed_carriers: list[int]


def _same(old: Leg, values: dict[str, Any]) -> bool:
    return old.status == "planned" and all(getattr(old, k) == v for k, v in values.items())


def apply_itinerary(
    conn: Conn,
    principal: Principal,
    rows: list[Any],
    now: datetime,
    *,
    carrier_id: int | None = None,
    customer_id: int | None = None,
) -> ItineraryChange:
    """Write an itinerary (one carrier's, or a bulk upload naming carriers): all or nothing."""
    principal.require("assets:write")
    default = get_carrier(conn, principal, carrier_id) if carrier_id is not None else None
    owner = default.customer_id if default else owner_for(principal, customer_id)
    if default is None and principal.scope is None:
        fleet.get_customer(conn, principal, owner)
    checked = _check_rows(conn, owner, rows, default)
    if checked.problems:
        raise InvalidRows(
            f"{len(checked.problems)} problem(s) in the itinerary; nothing was written",
            checked.problems,
        )
    existing = repo.legs_by_ref(conn, owner, [leg.leg_id for _, leg, *_ in checked.legs])
    involved = {c for _, _, c, _, _ in checked.legs} | {e.carrier_id for e in existing.values()}
    if default is not None:
        involved.add(default.id)
    repo.lock_carriers(conn, sorted(involved))
    created = updated = unchanged = swaps = 0
    changed: set[int] = set()
    kept: dict[int, list[int]] = {}
    since: dict[int, datetime] = {}
    for _, leg, carrier, from_id, to_id in checked.legs:
        values = {
            "carrier_id": carrier,
            "from_site_id": from_id,
            "to_site_id": to_id,
            "scheduled_departure": leg.scheduled_departure,
            "scheduled_arrival": leg.scheduled_arrival,
            "estimated_departure": leg.estimated_departure,
            "estimated_arrival": leg.estimated_arrival,
            "arrival_stand": leg.stand,
        }
        departs = leg.estimated_departure or leg.scheduled_departure
        since[carrier] = min(since.get(carrier, departs), departs)
        old = existing.get(leg.leg_id)
        if old is None:
            row = repo.insert_leg(conn, values | {"customer_id": owner, "leg_ref": leg.leg_id})
            created += 1
            changed.add(carrier)
        elif _same(old, values):
            row = old
            unchanged += 1
        else:
            if old.carrier_id != carrier:
                swaps += 1
                changed.add(old.carrier_id)
            row = repo.update_leg(conn, old.id, values)
            updated += 1
            changed.add(carrier)
        kept.setdefault(carrier, []).append(row.id)
    cancelled = 0
    if default is not None and not checked.legs:
        since[default.id] = now
        kept[default.id] = []
    for carrier, start in since.items():
        dropped = repo.cancel_legs_from(conn, carrier, start, kept.get(carrier, []), now)
        if dropped:
            cancelled += dropped
            changed.add(carrier)
    refs = sorted({c.ref for c in _carriers(conn, sorted(involved))})
    return ItineraryChange(
        carriers=refs,
        created=created,
        updated=updated,
        unchanged=unchanged,
        cancelled=cancelled,
        tail_swaps=swaps,
        changed_carriers=sorted(changed),
    )


def _carriers(conn: Conn, ids: list[int]) -> list[Carrier]:
    return [c for c in (repo.CARRIERS.get(conn, i, scope=None) for i in ids) if c is not None]


def itinerary(
    conn: Conn, principal: Principal, carrier_id: int, *, since: datetime | None, limit: int
) -> list[LegView]:
    """A carrier's planned legs from ``since`` on (all planned legs when None)."""
    carrier = get_carrier(conn, principal, carrier_id)
    return repo.leg_views(conn, carrier_id=carrier.id, since=since, limit=limit)


def planned_legs(conn: Conn, carrier_id: int, *, arriving_after: datetime) -> list[Leg]:
    """A carrier's planned legs arriving after a time, for planning."""
    return repo.planned_legs(conn, carrier_id, arriving_after=arriving_after)


def get_leg(conn: Conn, leg_id: int) -> Leg | None:
    """One leg by id."""
    return repo.get_leg(conn, leg_id)


def carrier_map(conn: Conn, principal: Principal, now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Carriers with position and next stop, stations, shipments in transit to a station and
    the visits of open orders, within the caller's customer (the dashboard's map)."""
    return repo.carrier_map(conn, principal.scope, now)
