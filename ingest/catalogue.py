"""The metric catalogue as ingest checks readings against it: each kind's metrics with their
bounds and its usage counter, loaded once per database and reloaded when a reading names a
metric the cached copy does not know."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection

from fleet import service as fleet
from fleet.schemas import MetricRecord

Conn = Connection[Any]

# The catalogue is reloaded when an unknown metric shows up and it is older than this.
CATALOGUE_MAX_AGE_S = 60.0


@dataclass(frozen=True, slots=True)
class MetricSpec:
    id: int
    name: str
    unit: str
    low: float
    high: float


@dataclass(slots=True)
class MetricCatalogue:
    """Metrics by kind and name, from the ``metrics`` table (kept by ``fleetcare kinds apply``)."""

    by_kind: dict[str, dict[str, MetricSpec]]
    usage_metric_id: dict[str, int]
    loaded_at: float = field(default_factory=time.monotonic)

    @classmethod
    def from_rows(
        cls, rows: Sequence[MetricRecord], usage_metrics: dict[str, str]
    ) -> MetricCatalogue:
        """The catalogue of ``rows``; ``usage_metrics`` names each kind's usage counter."""
        by_kind: dict[str, dict[str, MetricSpec]] = {}
        usage: dict[str, int] = {}
        for r in rows:
            by_kind.setdefault(r.kind, {})[r.name] = MetricSpec(r.id, r.name, r.unit, r.low, r.high)
            if usage_metrics.get(r.kind) == r.name:
                usage[r.kind] = r.id
        return cls(by_kind, usage)

    @classmethod
    def load(cls, conn: Conn) -> MetricCatalogue:
        """The catalogue as the database holds it now."""
        return cls.from_rows(*fleet.metric_catalogue(conn))


class CatalogueCache:
    """The metric catalogue of each database this process writes to, loaded once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_database: dict[tuple[str, int, str], MetricCatalogue] = {}

    @staticmethod
    def _key(conn: Conn) -> tuple[str, int, str]:
        info = conn.info
        return (info.host, info.port, info.dbname)

    def get(self, conn: Conn) -> MetricCatalogue:
        """The cached catalogue of ``conn``'s database, loading it the first time."""
        key = self._key(conn)
        with self._lock:
            found = self._by_database.get(key)
        if found is None:
            found = self.reload(conn)
        return found

    def reload(self, conn: Conn) -> MetricCatalogue:
        """Read the catalogue again (a metric may have been added since)."""
        catalogue = MetricCatalogue.load(conn)
        with self._lock:
            self._by_database[self._key(conn)] = catalogue
        return catalogue


# One per process, by design: the catalogue changes when a kind is applied; a reading of a
# metric the cached copy does not know reloads it (at most every CATALOGUE_MAX_AGE_S).
CATALOGUES = CatalogueCache()
