"""Applying kind definitions: additive changes make a new version, changes that would break
stored readings, models or orders are refused; and reading the kinds back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetcare.errors import Conflict, Invalid, NotFound
from kinds import repository as repo
from kinds.loader import builtin_files, load_file
from kinds.schemas import ApplyResult, KindDefinition, KindRecord, KindSummary

Conn = repo.Conn


class BreakingChange(Conflict):
    """A new definition would invalidate what is stored under the kind's current one."""

    code = "kind_change_refused"


def _changes(
    conn: Conn, current: repo.KindRow | None, new: KindDefinition
) -> tuple[list[str], list[str]]:
    """(changes, refusals) of going from the stored kind to ``new``."""
    if current is None:
        return [f"created kind {new.name!r}"], []
    changes: list[str] = []
    refused: list[str] = []
    old_def = KindDefinition.model_validate(current.definition) if current.definition else None
    stored = repo.stored_metrics(conn, new.name)
    with_data = repo.metrics_with_readings(conn, new.name)
    new_names = set(new.metric_names)
    for name in sorted(set(stored) - new_names):
        if name in with_data:
            refused.append(f"metric {name!r} has stored readings and cannot be removed")
        else:
            changes.append(f"removed metric {name!r}")
    for m in new.metrics:
        old = stored.get(m.name)
        if old is None:
            changes.append(f"added metric {m.name!r}")
            continue
        differences: list[tuple[str, object, object]] = []
        if old.unit != m.unit:
            differences.append(("unit", old.unit, m.unit))
        # roles were not recorded before definitions: the first definition sets them
        if old_def is not None and old.role != m.role:
            differences.append(("role", old.role, m.role))
        if old.cumulative != m.cumulative:
            differences.append(("cumulative", old.cumulative, m.cumulative))
        for field, before, after in differences:
            if m.name in with_data:
                refused.append(
                    f"metric {m.name!r} has stored readings: its {field} cannot change"
                    f" from {before!r} to {after!r} (add a new metric instead)"
                )
            else:
                changes.append(f"metric {m.name!r}: {field} {before!r} → {after!r}")
        if old_def is not None:
            before_m = old_def.metric(m.name) if m.name in old_def.metric_names else None
            if before_m is not None and (before_m.low, before_m.high) != (m.low, m.high):
                changes.append(
                    f"metric {m.name!r}: bounds [{before_m.low:g}, {before_m.high:g}]"
                    f" → [{m.low:g}, {m.high:g}]"
                )
    life_before = (current.life_unit, current.usage_metric)
    life_after = (new.life_unit, new.usage_metric)
    if life_before != life_after:
        if repo.has_history(conn, new.name):
            refused.append(
                f"the life unit and usage counter cannot change from {life_before[0]!r}"
                f" ({life_before[1]}) to {life_after[0]!r} ({life_after[1]}): stored usage,"
                " lives and models count in the old one (define a new kind instead)"
            )
        else:
            changes.append(
                f"life: {life_before[0]} ({life_before[1]}) → {life_after[0]} ({life_after[1]})"
            )
    old_components = (
        set(old_def.component_names) if old_def else repo.live_components(conn, new.name)
    )
    removed = old_components - set(new.component_names)
    if removed:
        in_use = repo.components_with_records(conn, new.name) & removed
        for c in sorted(in_use):
            refused.append(
                f"component {c!r} has orders, recorded lives or predictions and cannot be removed"
            )
        changes.extend(f"removed component {c!r}" for c in sorted(removed - in_use))
    changes.extend(f"added component {c!r}" for c in new.component_names if c not in old_components)
    if old_def is not None:
        if old_def.mobile != new.mobile:
            changes.append(f"mobile {old_def.mobile} → {new.mobile}")
        for field in ("display_name", "description", "life", "end_of_life", "model", "economics"):
            if getattr(old_def, field) != getattr(new, field) and field != "life":
                changes.append(f"changed {field}")
        if old_def.life.typical != new.life.typical:
            changes.append(f"life.typical {old_def.life.typical:g} → {new.life.typical:g}")
        if old_def.life.typical_per_day != new.life.typical_per_day:
            before, after = old_def.life.typical_per_day, new.life.typical_per_day
            changes.append(f"life.typical_per_day {before or 'none'} → {after or 'none'}")
        if old_def.components != new.components and not removed:
            changes.append("changed parts")
    elif current.definition is None:
        changes.insert(0, "adopted the catalogue's kind as version 1")
    return changes, refused


def apply_definition(conn: Conn, definition: KindDefinition, *, source: str = "") -> ApplyResult:
    """Store ``definition``: a new kind, a new version of a changed kind, or nothing when it
    is unchanged. BreakingChange (nothing stored) when it would invalidate stored data."""
    repo.lock_kind(conn, definition.name)
    current = repo.find_kind(conn, definition.name)
    if current is not None and current.definition is not None:
        stored = KindDefinition.model_validate(current.definition)
        if stored == definition:
            return ApplyResult(
                name=definition.name,
                version=current.version,
                created=False,
                changed=False,
                changes=[],
            )
    skus = [p.sku for c in definition.components for p in c.parts]
    taken = {s: k for s, k in repo.sku_owners(conn, skus).items() if k != definition.name}
    changes, refused = _changes(conn, current, definition)
    refused.extend(f"part SKU {s!r} is already a part of kind {k!r}" for s, k in taken.items())
    if refused:
        raise BreakingChange(
            f"kind {definition.name!r}: change refused, nothing was applied: " + "; ".join(refused)
        )
    version = (current.version if current else 0) + 1
    repo.write_kind(conn, definition, version, changes or ["no visible change"], source)
    return ApplyResult(
        name=definition.name,
        version=version,
        created=current is None,
        changed=True,
        changes=changes,
    )


def apply_file(conn: Conn, path: Path | str) -> ApplyResult:
    """Load, validate and apply one kind file."""
    return apply_definition(conn, load_file(path), source=str(path))


def apply_builtin(conn: Conn) -> list[ApplyResult]:
    """Apply the kind files shipped with fleetcare, as a user's files are applied."""
    return [
        apply_definition(conn, load_file(p), source=f"builtin:{p.name}") for p in builtin_files()
    ]


def get_kind(conn: Conn, name: str) -> KindDefinition:
    """The current definition of kind ``name``; NotFound naming the known kinds."""
    row = repo.find_kind(conn, name)
    if row is None or row.definition is None:
        known = ", ".join(repo.kind_names(conn)) or "none"
        raise NotFound(f"unknown asset kind {name!r}; known: {known}", code="asset_kind_not_found")
    return KindDefinition.model_validate(row.definition)


def typical_per_day(conn: Conn, name: str) -> float | None:
    """Kind ``name``'s typical usage per day (``life.typical_per_day``); None when it states
    none or the kind is unknown."""
    row = repo.find_kind(conn, name)
    if row is None or not isinstance(row.definition, dict):
        return None
    life = row.definition.get("life")
    value = life.get("typical_per_day") if isinstance(life, dict) else None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def get_record(conn: Conn, name: str) -> KindRecord:
    """Kind ``name`` with its version and last change."""
    definition = get_kind(conn, name)
    row = repo.find_kind(conn, name)
    assert row is not None
    return KindRecord(
        name=row.name,
        display_name=definition.display_name,
        version=row.version,
        updated_at=row.updated_at,
        definition=definition,
    )


def all_kinds(conn: Conn) -> dict[str, KindDefinition]:
    """Every defined kind's current definition, by name."""
    return {name: get_kind(conn, name) for name in repo.kind_names(conn)}


def list_kinds(conn: Conn) -> list[KindSummary]:
    """A summary per kind."""
    return repo.list_kinds(conn)


def require_kind(conn: Conn, name: str, *, where: str = "kind") -> None:
    """Invalid (naming ``where``) when ``name`` is not a defined kind."""
    if repo.find_kind(conn, name) is None:
        known = ", ".join(repo.kind_names(conn)) or "none"
        raise Invalid(f"{where}: unknown asset kind {name!r}; known: {known}", code="unknown_kind")


def definition_document(definition: KindDefinition) -> dict[str, Any]:
    """The JSON document of a definition (what ``kinds show`` prints and the API returns)."""
    return definition.model_dump(mode="json")
