"""General cost constants shared by the customers' value reports (maintenance/value) and
`fleetcare evaluate`. What each kind's work costs is in its definition (``economics:``,
:class:`kinds.schemas.Economics`)."""

from __future__ import annotations

# A preventive programme replaces a component at the usage (here: the age) by which this share
# of the recorded lives had failed.
PREVENTIVE_QUANTILE = 0.05
