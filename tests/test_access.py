"""The permission model: roles, scopes, ``Principal.can``, and docs/access.md from the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.access_doc import access_markdown
from fleet.access import ACCESS_ROLES, KEY_ROLES, ROLE_ACTIONS, scope_allows, valid_scope
from fleet.schemas import NO_CUSTOMER, Principal
from fleetcare.errors import Forbidden


def test_the_committed_access_doc_is_the_generated_one() -> None:
    committed = (Path(__file__).resolve().parents[1] / "docs" / "access.md").read_text()
    assert committed == access_markdown(), (
        "docs/access.md differs from the code: run `fleetcare access table > docs/access.md`"
    )


@pytest.mark.parametrize(("key_role", "access"), list(KEY_ROLES.items()))
def test_the_first_versions_key_roles_map_to_roles(key_role: str, access: str) -> None:
    principal = Principal(key_id=1, role=key_role, customer_id=1)  # type: ignore[arg-type]
    assert principal.access == access
    back = Principal(access=access, customer_id=1)
    assert back.role == key_role


def test_operator_roles_see_everything_but_only_the_admin_changes_everything() -> None:
    for access in ("operator:admin", "operator:dispatcher", "operator:billing"):
        assert Principal(access=access).scope is None
    dispatcher = Principal(access="operator:dispatcher", user_id=3)
    assert dispatcher.can("orders:write") and dispatcher.can("shipments:write")
    assert not dispatcher.can("plans:write") and not dispatcher.can("customers:write")
    billing = Principal(access="operator:billing", user_id=4)
    assert billing.can("plans:write") and billing.can("billing:write")
    assert not billing.can("orders:write") and not billing.can("shipments:write")


def test_customer_roles() -> None:
    admin = Principal(access="customer:admin", customer_id=7, user_id=1)
    manager = Principal(access="customer:fleet_manager", customer_id=7, user_id=2)
    viewer = Principal(access="customer:viewer", customer_id=7, user_id=3)
    for action in ("users:write", "keys:write", "webhooks:write", "subscriptions:write"):
        assert admin.can(action) and not manager.can(action) and not viewer.can(action)
    for action in ("assets:write", "devices:write", "orders:write"):
        assert admin.can(action) and manager.can(action) and not viewer.can(action)
    assert all(not viewer.can(a) for a in ROLE_ACTIONS["customer:viewer"] if ":read" not in a)
    assert viewer.can("assets:read") and not viewer.can("keys:read")
    assert viewer.scope == 7


def test_a_partner_technician_works_orders_and_reads_little() -> None:
    tech = Principal(access="partner:technician", partner_id=5, user_id=9)
    assert tech.scope == NO_CUSTOMER and tech.partner_scope == 5
    assert tech.can("orders:work") and tech.can("orders:read") and tech.can("assets:read")
    assert not tech.can("orders:write") and not tech.can("billing:read")
    assert not tech.can("subscriptions:read") and not tech.can("sites:read")


def test_can_checks_the_resources_organisation() -> None:
    class Thing:
        def __init__(self, customer_id: int | None = None, partner_id: int | None = None):
            self.customer_id, self.partner_id = customer_id, partner_id

    admin = Principal(access="customer:admin", customer_id=7)
    assert admin.can("assets:write", Thing(customer_id=7))
    assert not admin.can("assets:write", Thing(customer_id=8))
    assert Principal(access="operator:admin").can("assets:write", Thing(customer_id=8))
    partner = Principal(access="partner:technician", partner_id=5)
    assert partner.can("orders:work", Thing(customer_id=1, partner_id=5))
    assert not partner.can("orders:work", Thing(customer_id=1, partner_id=6))


def test_scopes_narrow_a_key_never_widen_it() -> None:
    scoped = Principal(key_id=1, role="customer", customer_id=1, scopes=frozenset({"assets:read"}))
    assert scoped.can("assets:read") and not scoped.can("assets:write")
    assert not scoped.can("orders:read")
    writer = Principal(key_id=2, role="customer", customer_id=1, scopes=frozenset({"orders:write"}))
    assert writer.can("orders:read") and writer.can("orders:write") and writer.can("orders:report")
    reader = Principal(key_id=3, role="technician", customer_id=1, scopes=frozenset({"read"}))
    assert reader.can("assets:read") and not reader.can("orders:work")
    # a scope never gives what the role lacks
    wide = Principal(key_id=4, role="technician", customer_id=1, scopes=frozenset({"write"}))
    assert not wide.can("keys:write")
    with pytest.raises(Forbidden) as refused:
        scoped.require("assets:write")
    assert refused.value.code == "scope_not_permitted"
    with pytest.raises(Forbidden) as refused:
        wide.require("keys:write")
    assert refused.value.code == "role_not_permitted"


def test_scope_names() -> None:
    assert valid_scope("read") and valid_scope("assets:write") and valid_scope("orders:read")
    assert not valid_scope("assets:delete") and not valid_scope("nope:read")
    assert not valid_scope("")
    assert scope_allows(frozenset({"assets:write"}), "assets:read")
    assert not scope_allows(frozenset({"assets:read"}), "assets:work")


def test_every_role_is_documented() -> None:
    doc = access_markdown()
    for access in ACCESS_ROLES:
        short = access.replace("operator:", "op:").replace("customer:", "cu:")
        assert f"`{short}`" in doc
