"""Records of the simulators: the fleet spec, and the ground truth they know."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from fleet.schemas import SLUG
from kinds.schemas import NAME_PATTERN

# the kinds with physics of their own, and the `fleetcare simulate` option that counts each
PHYSICS_OPTIONS = {"tire": "--tires", "elevator": "--elevators", "engine": "--engines"}
PHYSICS_KINDS = tuple(PHYSICS_OPTIONS)


def simulate_args(assets: Mapping[str, int]) -> list[str]:
    """`fleetcare simulate` arguments for a fleet of exactly ``assets`` (kind: count): a kind
    with physics of its own by its option (0 for those not named), any other kind by the
    generic process (``--kind NAME=COUNT``)."""
    args: list[str] = []
    for kind, option in PHYSICS_OPTIONS.items():
        args += [option, str(assets.get(kind, 0))]
    for kind, count in assets.items():
        if kind not in PHYSICS_OPTIONS:
            args += ["--kind", f"{kind}={count}"]
    return args


class FleetSpec(BaseModel):
    """What to simulate: counts per kind, the customer, the seed and the pace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer: str = Field(default="sim-fleet", pattern=SLUG, description="customer slug")
    customer_name: str = Field(default="Simulated Fleet", min_length=1, max_length=200)
    tires: int = Field(default=24, ge=0, le=100_000, description="tires (6 per truck)")
    elevators: int = Field(default=9, ge=0, le=100_000, description="elevators (3 per building)")
    engines: int = Field(default=4, ge=0, le=100_000, description="engines (2 per aircraft)")
    other: dict[Annotated[str, StringConstraints(pattern=NAME_PATTERN)], int] = Field(
        default_factory=dict,
        description="assets of other kinds by name, simulated by the generic degradation"
        " process from their definitions (4 per gateway)",
    )
    replay: Path | None = Field(
        default=None, description="a C-MAPSS train_FD00N.txt: engines replay its units"
    )
    seed: int = Field(default=7, ge=0, le=2**63 - 1)
    speedup: float = Field(default=20_000.0, gt=0, le=1e8, description="simulated s per real s")
    duration_s: float | None = Field(
        default=None, gt=0, description="stop after; None: until Ctrl-C"
    )
    tick_s: float = Field(default=1.0, gt=0, le=3600, description="real seconds between readings")
    batch_max: int = Field(default=500, ge=1, le=1_000, description="readings per payload")
    faults: bool = Field(default=True, description="sensor faults: stuck, spikes, dropouts")
    offline: bool = Field(default=True, description="gateways go offline and flush a backlog")
    malformed_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of payloads followed by a malformed one"
    )
    warmup: bool = Field(default=True, description="start with assets of mixed ages")
    repair_after_h: float | None = Field(
        default=24.0, ge=0, description="simulated hours until a failed asset is repaired"
    )
    truth_every_s: float = Field(default=10.0, gt=0, description="ground truth sampling (real s)")

    @field_validator("other")
    @classmethod
    def _counts(cls, other: dict[str, int]) -> dict[str, int]:
        for kind, n in other.items():
            if not 0 <= n <= 100_000:
                raise ValueError(f"{kind}: between 0 and 100000 assets")
        return other

    @property
    def trucks(self) -> int:
        return -(-self.tires // TIRES_PER_TRUCK)

    @property
    def buildings(self) -> int:
        return -(-self.elevators // ELEVATORS_PER_BUILDING)

    @property
    def aircraft(self) -> int:
        return -(-self.engines // ENGINES_PER_AIRCRAFT)


TIRES_PER_TRUCK = 6
ELEVATORS_PER_BUILDING = 3
ENGINES_PER_AIRCRAFT = 2


class SiteRef(BaseModel):
    """A site the fleet registers."""

    ref: str
    name: str
    region: str = ""


class AssetRef(BaseModel):
    """An asset the fleet registers: its kind, site, gateway and attributes."""

    ref: str
    kind: str
    site: str
    device: str
    attributes: dict[str, str | int | float] = Field(default_factory=dict)


class DeviceRef(BaseModel):
    """A gateway the fleet registers, and the assets it reports for."""

    ref: str
    name: str
    kind: str
    assets: tuple[str, ...]


class TruthRow(BaseModel):
    """The simulator's knowledge of one component at one time (never a model feature)."""

    asset_ref: str
    component: str
    time: datetime
    life_started_at: datetime
    usage: float  # the component's usage since its life began, in the kind's life unit
    wear: float  # hidden wear fraction: 0 new, the component fails at 1
    rul_expected: float  # remaining life at the component's own wear rate so far


class LifeEnd(BaseModel):
    """The end of one component's life in the simulation."""

    asset_ref: str
    kind: str
    component: str
    started_at: datetime
    ended_at: datetime
    end_reason: Literal["failure", "replacement"]
    failure_mode: str | None
    # a failure's cause as a technician reports it (simulators.physics.reported_cause:
    # confirmed_wear or other_fault, a random fault); None for a replacement
    cause: str | None = None
    usage_at_start: float  # the asset's usage counter when the life began
    usage_at_end: float  # the asset's usage counter when it ended
    by_order: bool = False  # ended by a completed order: the product records it in asset_lives
