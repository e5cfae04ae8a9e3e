"""The cost assumptions of `fleetcare evaluate`: kept in ``kinds.economics`` so that the
customers' value reports use the very same ones."""

from __future__ import annotations

from kinds.economics import ECONOMICS, PREVENTIVE_QUANTILE, KindEconomics

__all__ = ["ECONOMICS", "PREVENTIVE_QUANTILE", "KindEconomics"]
