"""Asset kinds: the one source of truth for metrics, usage, life units, components and parts.

Simulators, ingest validation, features and the parts catalogue all read this module;
``fleet.repository.sync_catalogue`` copies it into the database after migrations.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Metric:
    """One measured quantity with its unit and physical bounds (inclusive)."""

    name: str
    unit: str
    low: float
    high: float
    description: str = ""
    cumulative: bool = False  # a counter that only grows between renewals (odometer, trips)


@dataclass(frozen=True)
class Part:
    """A spare part that fits one component of a kind."""

    sku: str
    name: str
    price_minor: int  # price in minor units (cents) of the catalogue currency
    currency: str = "EUR"
    labour_hours: float = 1.0


@dataclass(frozen=True)
class Component:
    """A replaceable component of an asset, with the parts that fit it."""

    name: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class AssetKind:
    """Everything fleetcare knows about one kind of asset."""

    name: str
    life_unit: str
    usage_metric: str
    metrics: tuple[Metric, ...]
    components: tuple[Component, ...]
    failure: str
    typical_life: float  # in life units, a new asset's expected life (for defaults and demos)
    regime_metrics: tuple[str, ...] = field(default=())  # operating-condition settings

    def metric(self, name: str) -> Metric:
        """Return the metric called ``name`` or raise KeyError."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"{self.name} has no metric {name!r}")

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    @property
    def sensor_names(self) -> tuple[str, ...]:
        """Metrics that describe condition: neither the usage counter nor a regime setting."""
        skip = {self.usage_metric, *self.regime_metrics}
        return tuple(m.name for m in self.metrics if m.name not in skip)


TIRE = AssetKind(
    name="tire",
    life_unit="km",
    usage_metric="odometer_km",
    metrics=(
        Metric("pressure_kpa", "kPa", 0.0, 1500.0, "inflation pressure"),
        Metric("temperature_c", "°C", -60.0, 250.0, "carcass temperature"),
        Metric("load_kg", "kg", 0.0, 20000.0, "load on the tire"),
        Metric("speed_kmh", "km/h", 0.0, 250.0, "road speed"),
        Metric("tread_depth_mm", "mm", 0.0, 30.0, "tread depth from a drive-over reader"),
        Metric("odometer_km", "km", 0.0, 5_000_000.0, "distance since fitted", cumulative=True),
    ),
    components=(
        Component(
            "tire",
            (Part("TIRE-315-80R22.5", "Truck tire 315/80 R22.5", 45_000, labour_hours=0.75),),
        ),
    ),
    failure="tread below 1.6 mm, or blowout from heat and under-inflation",
    typical_life=120_000.0,
)

ELEVATOR = AssetKind(
    name="elevator",
    life_unit="trips",
    usage_metric="trip_count",
    metrics=(
        Metric("door_close_time_s", "s", 0.0, 60.0, "time for the doors to close"),
        Metric("motor_current_a", "A", 0.0, 500.0, "hoist motor current"),
        Metric("vibration_mm_s", "mm/s", 0.0, 200.0, "car vibration (RMS velocity)"),
        Metric("levelling_error_mm", "mm", -200.0, 200.0, "stop position error"),
        Metric("brake_wear_pct", "%", 0.0, 100.0, "brake lining wear"),
        Metric("trip_count", "trips", 0.0, 100_000_000.0, "trips since renewal", cumulative=True),
    ),
    components=(
        Component(
            "door_operator",
            (Part("ELV-DOOR-OP", "Door operator kit", 120_000, labour_hours=3.0),),
        ),
        Component("brake", (Part("ELV-BRAKE-SET", "Brake lining set", 60_000, labour_hours=2.0),)),
    ),
    failure="door operator or brake failure",
    typical_life=250_000.0,
)

# The 21 sensors of NASA C-MAPSS (Saxena et al., PHM08), in file order s1..s21, after the
# three operational settings. Names follow the data set's documentation.
_CMAPSS_SENSORS: tuple[tuple[str, str, float, float, str], ...] = (
    ("t2_r", "°R", 300.0, 800.0, "total temperature at fan inlet"),
    ("t24_r", "°R", 300.0, 1000.0, "total temperature at LPC outlet"),
    ("t30_r", "°R", 500.0, 2500.0, "total temperature at HPC outlet"),
    ("t50_r", "°R", 500.0, 2500.0, "total temperature at LPT outlet (EGT)"),
    ("p2_psia", "psia", 0.0, 50.0, "pressure at fan inlet"),
    ("p15_psia", "psia", 0.0, 60.0, "total pressure in bypass duct"),
    ("p30_psia", "psia", 0.0, 1000.0, "total pressure at HPC outlet"),
    ("nf_rpm", "rpm", 0.0, 5000.0, "physical fan speed (N1)"),
    ("nc_rpm", "rpm", 0.0, 15000.0, "physical core speed (N2)"),
    ("epr", "ratio", 0.0, 5.0, "engine pressure ratio P50/P2"),
    ("ps30_psia", "psia", 0.0, 200.0, "static pressure at HPC outlet"),
    ("phi", "pps/psi", 0.0, 1000.0, "ratio of fuel flow to Ps30"),
    ("nrf_rpm", "rpm", 0.0, 5000.0, "corrected fan speed"),
    ("nrc_rpm", "rpm", 0.0, 15000.0, "corrected core speed"),
    ("bpr", "ratio", 0.0, 30.0, "bypass ratio"),
    ("farb", "ratio", 0.0, 1.0, "burner fuel-air ratio"),
    ("htbleed", "-", 0.0, 1000.0, "bleed enthalpy"),
    ("nf_dmd_rpm", "rpm", 0.0, 5000.0, "demanded fan speed"),
    ("pcnfr_dmd_pct", "%", 0.0, 200.0, "demanded corrected fan speed"),
    ("w31_lbm_s", "lbm/s", 0.0, 200.0, "HPT coolant bleed"),
    ("w32_lbm_s", "lbm/s", 0.0, 200.0, "LPT coolant bleed"),
)
CMAPSS_SETTINGS: tuple[str, ...] = ("altitude_kft", "mach", "tra_pct")
CMAPSS_SENSORS: tuple[str, ...] = tuple(s[0] for s in _CMAPSS_SENSORS)

ENGINE = AssetKind(
    name="engine",
    life_unit="cycles",
    usage_metric="flight_cycles",
    metrics=(
        Metric("altitude_kft", "kft", -2.0, 60.0, "operating setting 1: altitude"),
        Metric("mach", "Mach", 0.0, 1.2, "operating setting 2: Mach number"),
        Metric("tra_pct", "%", 0.0, 120.0, "operating setting 3: throttle resolver angle"),
        *(Metric(n, u, lo, hi, d) for n, u, lo, hi, d in _CMAPSS_SENSORS),
        Metric(
            "flight_cycles", "cycles", 0.0, 1_000_000.0, "cycles since renewal", cumulative=True
        ),
    ),
    components=(
        Component(
            "hpc_module",
            (Part("ENG-HPC-OVH", "HPC module overhaul kit", 2_500_000, labour_hours=40.0),),
        ),
    ),
    failure="EGT margin exhausted / end of a C-MAPSS unit",
    typical_life=220.0,
    regime_metrics=CMAPSS_SETTINGS,
)

KINDS: dict[str, AssetKind] = {k.name: k for k in (TIRE, ELEVATOR, ENGINE)}


def get_kind(name: str) -> AssetKind:
    """Return the asset kind called ``name``; raise KeyError with the known kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown asset kind {name!r}; known: {', '.join(KINDS)}") from None
