"""The cost assumptions of `fleetcare evaluate`: the ``economics:`` blocks of the shipped kind
definitions (kinds/builtin/), which the customers' value reports read from the database."""

from __future__ import annotations

from kinds.economics import PREVENTIVE_QUANTILE
from kinds.loader import builtin_kinds
from kinds.schemas import Economics

ECONOMICS: dict[str, Economics] = {
    name: spec.economics for name, spec in builtin_kinds().items() if spec.economics is not None
}

__all__ = ["ECONOMICS", "PREVENTIVE_QUANTILE", "Economics"]
