"""Lifecycles: a status enum and one table of allowed transitions, checked in one place.

Each domain declares its lifecycle once (``ORDER = Lifecycle("order", {...})``); services ask
it before they change a status, repositories ask it which statuses may move (``sources``), and
a move it does not allow is an :class:`IllegalTransition` — a 409, never a 500.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from fleetcare.errors import Conflict

S = TypeVar("S", bound=StrEnum)


class IllegalTransition(Conflict):
    """The object's status does not allow the requested change."""

    code = "illegal_transition"


class Lifecycle(Generic[S]):
    """The allowed status changes of one kind of object (``noun``): from -> the statuses it may
    become."""

    def __init__(self, noun: str, transitions: Mapping[S, Collection[S]]) -> None:
        self.noun = noun
        self.transitions: dict[S, frozenset[S]] = {k: frozenset(v) for k, v in transitions.items()}

    def allows(self, current: S | str, to: S) -> bool:
        """Whether ``current`` may become ``to``."""
        return any(to in targets for s, targets in self.transitions.items() if s == current)

    def check(self, object_id: int, current: S | str, to: S) -> S:
        """``to`` when ``current`` may become it; IllegalTransition (409) otherwise."""
        if not self.allows(current, to):
            raise IllegalTransition(f"{self.noun} {object_id} is {current}; it cannot become {to}")
        return to

    def sources(self, to: S) -> list[S]:
        """The statuses that may become ``to`` (for a guarded UPDATE)."""
        return sorted(s for s, targets in self.transitions.items() if to in targets)

    def is_final(self, current: S | str) -> bool:
        """Whether nothing can follow ``current``."""
        return not any(targets for s, targets in self.transitions.items() if s == current)
