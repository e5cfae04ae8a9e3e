"""What ended a failed component, in the words of the order outcomes (issue 20): one
vocabulary for failure reports (``POST /v1/failures``), history imports of lifetimes, the
simulators' reports and training: a failure of ``other_fault`` labels the life it ends so, and
training censors such a life at its end (``models.lifetimes.censored_at_end``)."""

from __future__ import annotations

from typing import Final, Literal, get_args

# confirmed_wear: the part's own wear; other_fault: a sudden external or other fault its wear
# did not cause; unknown: not said (and every failure recorded before causes were), counted as
# wear, as before.
FailureCause = Literal["confirmed_wear", "other_fault", "unknown"]
FAILURE_CAUSES: tuple[str, ...] = get_args(FailureCause)
CONFIRMED_WEAR: Final = "confirmed_wear"
OTHER_FAULT: Final = "other_fault"
UNKNOWN: Final = "unknown"
CAUSE_HELP = (
    "what ended the component: confirmed_wear, its own wear; other_fault, a sudden external "
    "or other fault its wear did not cause (training counts that life as ended early, not "
    "as worn out); unknown (default): not known, counted as wear"
)


def life_outcome(cause: str | None) -> str | None:
    """The label (``asset_lives.outcome``) a failure of ``cause`` gives the life it ends:
    ``other_fault``, as an order closed with that finding labels its life; otherwise None,
    which the database records as ``failure`` (counted as a wear end)."""
    return OTHER_FAULT if cause == OTHER_FAULT else None
