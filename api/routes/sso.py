"""An organisation's single sign-on (OpenID Connect): its admin reads, sets and removes it.

The client secret is write-only: no answer carries it. The operator names the customer or
partner whose sign-on it sets (``customer_id`` / ``partner_id``), or none for its own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from api import sessions
from api.deps import Caller, Conn, ReadConn
from fleetcare.inputs import INT8_MAX
from people import sso
from people.schemas import SsoConfigIn, SsoProvider

router = APIRouter(prefix="/v1", tags=["people"])

OrgId = Annotated[
    int | None,
    Query(ge=1, le=INT8_MAX, description="the operator: the customer or partner it acts for"),
]


@router.get("/sso")
def get_sso(
    request: Request,
    conn: ReadConn,
    caller: Caller,
    customer_id: OrgId = None,
    partner_id: OrgId = None,
) -> SsoProvider:
    """The organisation's OpenID Connect provider (issuer, client id, default role, claimed
    domains, the redirect URI to register at the provider); never the secret."""
    return sso.get_config(
        conn,
        caller,
        sessions.sso_policy(request),
        customer_id=customer_id,
        partner_id=partner_id,
    )


@router.put("/sso")
def set_sso(
    request: Request,
    body: SsoConfigIn,
    conn: Conn,
    caller: Caller,
    customer_id: OrgId = None,
    partner_id: OrgId = None,
) -> SsoProvider:
    """Set the organisation's provider: people of its claimed domains sign in there, and are
    created at their first sign-in with the default role. The secret is needed the first
    time; omitted later, the stored one stays. A domain another organisation claims: 409."""
    return sso.set_config(
        conn,
        caller,
        body,
        sessions.sso_policy(request),
        customer_id=customer_id,
        partner_id=partner_id,
    )


@router.delete("/sso", status_code=status.HTTP_204_NO_CONTENT)
def delete_sso(
    conn: Conn, caller: Caller, customer_id: OrgId = None, partner_id: OrgId = None
) -> Response:
    """Remove the organisation's single sign-on (its people stay)."""
    sso.delete_config(conn, caller, customer_id=customer_id, partner_id=partner_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
