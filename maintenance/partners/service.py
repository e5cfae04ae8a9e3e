"""Service partners: coverage, assignment, keys, commissions. No SQL text, no HTTP."""

from __future__ import annotations

from fleet import service as fleet
from fleet.schemas import NewApiKey, Principal
from fleet.service import translate_integrity_errors
from fleetcare.errors import NotFound
from maintenance.common import Conn, subject
from maintenance.events.service import emit
from maintenance.partners import repository as repo
from maintenance.partners.schemas import (
    Commission,
    Partner,
    PartnerCreate,
    PartnerKeyCreate,
    SiteList,
)


def create_partner(conn: Conn, principal: Principal, body: PartnerCreate) -> Partner:
    """Sign up a service partner (operator)."""
    principal.require("partners:write")
    with translate_integrity_errors(f"partner {body.code!r}"):
        partner = repo.insert_partner(conn, body.model_dump())
    emit(
        conn,
        "partner.created",
        {"partner": partner.model_dump(mode="json")},
        customer_id=None,
        subject=subject("partner", partner.id),
    )
    return partner


def _visible(principal: Principal, partner_id: int) -> None:
    if principal.organisation == "operator" or principal.partner_scope == partner_id:
        return
    raise NotFound(f"partner {partner_id} not found", code="partner_not_found")


def get_partner(conn: Conn, principal: Principal, partner_id: int) -> Partner:
    """A partner: the operator sees all, a partner key only itself."""
    _visible(principal, partner_id)
    partner = repo.get_partner(conn, partner_id)
    if partner is None:
        raise NotFound(f"partner {partner_id} not found", code="partner_not_found")
    return partner


def list_partners(
    conn: Conn, principal: Principal, *, after: int | None, limit: int
) -> tuple[list[Partner], int | None]:
    """Partners (operator), or the calling partner itself."""
    principal.require("partners:read")
    if principal.partner_scope is not None:
        return [get_partner(conn, principal, principal.partner_scope)], None
    return repo.list_partners(conn, after=after, limit=limit)


def add_sites(conn: Conn, principal: Principal, partner_id: int, body: SiteList) -> list[int]:
    """Let a partner cover sites explicitly (operator); returns every site it covers."""
    principal.require("partners:write")
    partner = get_partner(conn, principal, partner_id)
    missing = set(body.site_ids) - set(repo.existing_sites(conn, body.site_ids))
    if missing:
        raise NotFound(f"site {min(missing)} not found", code="site_not_found")
    if repo.add_sites(conn, partner.id, body.site_ids):
        emit(
            conn,
            "partner.sites_added",
            {"partner_id": partner.id, "site_ids": body.site_ids},
            customer_id=None,
            subject=subject("partner", partner.id),
        )
    return repo.site_ids(conn, partner.id)


def issue_key(
    conn: Conn, principal: Principal, partner_id: int, body: PartnerKeyCreate
) -> NewApiKey:
    """A key for the partner's staff; it sees only the orders assigned to the partner."""
    principal.require("partners:write")
    partner = get_partner(conn, principal, partner_id)
    return fleet.issue_api_key(
        conn, role="partner", customer_id=None, partner_id=partner.id, name=body.name
    )


def partner_for_site(conn: Conn, site_id: int | None) -> Partner | None:
    """The partner an order at ``site_id`` is assigned to, if any covers it."""
    return None if site_id is None else repo.partner_for_site(conn, site_id)


def record_commission(
    conn: Conn,
    *,
    partner_id: int,
    order_id: int,
    customer_id: int,
    basis_minor: int,
    currency: str,
) -> Commission | None:
    """Record the partner's commission on a completed order, once."""
    partner = repo.get_partner(conn, partner_id)
    assert partner is not None
    commission = repo.insert_commission(
        conn,
        partner_id=partner.id,
        order_id=order_id,
        customer_id=customer_id,
        basis_minor=basis_minor,
        rate_bps=partner.commission_bps,
        currency=currency,
    )
    if commission is not None:
        emit(
            conn,
            "partner.commission_recorded",
            {"commission": commission.model_dump(mode="json")},
            customer_id=None,
            subject=subject("partner", partner.id),
        )
    return commission


def list_commissions(
    conn: Conn, principal: Principal, partner_id: int, *, after: int | None, limit: int
) -> tuple[list[Commission], int | None]:
    """A partner's commissions (operator, or the partner itself)."""
    partner = get_partner(conn, principal, partner_id)
    return repo.list_commissions(conn, partner.id, after, limit)
