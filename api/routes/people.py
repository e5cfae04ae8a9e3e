"""Who am I, and the users of an organisation (list, invite, change role, disable)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from api import sessions
from api.deps import After, AppClock, Caller, Conn, Limit, ReadConn
from fleet.access import ROLE_ACTIONS
from fleet.schemas import Page
from fleetcare.inputs import Id
from people import service as people
from people.schemas import Invitation, Me, User, UserInvite, UserUpdate

router = APIRouter(prefix="/v1")


@router.get("/me", tags=["people"])
def me(request: Request, caller: Caller) -> Me:
    """The caller: person or key, organisation, role and what it may do; with a browser
    session, the anti-forgery token its writes send as ``X-CSRF-Token``."""
    found = getattr(request.state, "session_principal", None)
    return Me(
        who=caller.who,
        user_id=caller.user_id,
        key_id=caller.key_id,
        name=caller.name,
        organisation=caller.organisation,
        organisation_name=caller.organisation_name,
        customer_id=caller.customer_id,
        partner_id=caller.partner_id,
        access=caller.access,
        permissions=sorted(a for a in ROLE_ACTIONS[caller.access] if caller.can(a)),
        csrf_token=found[1] if found is not None else None,
    )


@router.post("/users", status_code=status.HTTP_201_CREATED, tags=["people"])
def invite_user(
    request: Request, body: UserInvite, conn: Conn, caller: Caller, clock: AppClock
) -> Invitation:
    """Invite a person into the caller's organisation (the operator: into a customer it names,
    or its own); the single-use link goes out as a ``user.invited`` event."""
    return people.invite_user(conn, caller, body, clock.now(), sessions.policy(request))


@router.get("/users", tags=["people"])
def list_users(
    conn: ReadConn, caller: Caller, after: After = None, limit: Limit = 50
) -> Page[User]:
    """The users of the caller's organisation (the operator: everyone)."""
    items, nxt = people.list_users(conn, caller, after=after, limit=limit)
    return Page(items=items, next_after=nxt)


@router.get("/users/{user_id}", tags=["people"])
def get_user(user_id: Id, conn: ReadConn, caller: Caller) -> User:
    """One user of the caller's organisation."""
    return people.get_user(conn, caller, user_id)


@router.patch("/users/{user_id}", tags=["people"])
def update_user(user_id: Id, body: UserUpdate, conn: Conn, caller: Caller) -> User:
    """Change a user's name or role, or disable / enable them (their sessions end)."""
    return people.update_user(conn, caller, user_id, body)
