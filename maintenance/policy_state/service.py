"""The policy's due state: lock (creating it), save, reset. No SQL text."""

from __future__ import annotations

from typing import Any

from maintenance.common import Conn
from maintenance.policy_state import repository as repo
from maintenance.policy_state.schemas import PolicyState


def lock(conn: Conn, asset_id: int, component: str) -> PolicyState:
    """The due state of an asset's component, created when missing, row-locked.

    Whoever changes an asset component's open order takes this lock first (the policy and
    order completion), so the two always lock in the same order.
    """
    return repo.lock_state(conn, asset_id, component)


def save(conn: Conn, asset_id: int, component: str, values: dict[str, Any]) -> None:
    """Write the state's fields."""
    repo.save_state(conn, asset_id, component, values)


def reset(conn: Conn, asset_id: int, component: str) -> None:
    """Back to clear: a new life of the component started."""
    repo.reset_state(conn, asset_id, component)
