"""All SQL of people: users, tokens, web sessions, and an API key's last use."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row

from fleetcare.repository import ScopedTable, insert_row, update_row
from people.schemas import SsoProviderRecord, User, UserAuth, WebSession

Conn = Connection[Any]

USERS = ScopedTable("users", User, retired_column="disabled_at")


def find_user_auth(conn: Conn, email: str) -> UserAuth | None:
    """The user with this address (any case), with what sign-in checks; locked for update."""
    with conn.cursor(row_factory=class_row(UserAuth)) as cur:
        return cur.execute(
            "SELECT * FROM users WHERE lower(email) = lower(%s) FOR UPDATE", (email,)
        ).fetchone()


def user_auth(conn: Conn, user_id: int) -> UserAuth | None:
    """One user with its sign-in fields, locked for update."""
    with conn.cursor(row_factory=class_row(UserAuth)) as cur:
        return cur.execute("SELECT * FROM users WHERE id = %s FOR UPDATE", (user_id,)).fetchone()


def email_taken(conn: Conn, email: str) -> bool:
    """Whether a user already has this address (compared without case)."""
    row = conn.execute("SELECT 1 FROM users WHERE lower(email) = lower(%s)", (email,)).fetchone()
    return row is not None


def list_users(
    conn: Conn,
    *,
    customer_id: int | None,
    partner_id: int | None,
    organisation: str | None,
    after: int | None,
    limit: int,
) -> tuple[list[User], int | None]:
    """One page of users, filtered by organisation (None: every organisation's)."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        rows = cur.execute(
            """
            SELECT * FROM users
             WHERE (%(c)s::bigint IS NULL OR customer_id = %(c)s)
               AND (%(p)s::bigint IS NULL OR partner_id = %(p)s)
               AND (%(o)s::text IS NULL OR organisation = %(o)s)
               AND id > coalesce(%(after)s, 0)
             ORDER BY id LIMIT %(limit)s
            """,
            {
                "c": customer_id,
                "p": partner_id,
                "o": organisation,
                "after": after,
                "limit": limit + 1,
            },
        ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].id if more else None


def record_sign_in(conn: Conn, user_id: int) -> None:
    """A successful sign-in: the failure count resets."""
    conn.execute(
        "UPDATE users SET failed_sign_ins = 0, locked_until = NULL, last_sign_in_at = now()"
        " WHERE id = %s",
        (user_id,),
    )


def record_failed_sign_in(conn: Conn, user_id: int, locked_until: datetime | None) -> None:
    """One more failed sign-in; ``locked_until`` when the account is now locked."""
    conn.execute(
        "UPDATE users SET failed_sign_ins = failed_sign_ins + 1,"
        " locked_until = coalesce(%s, locked_until) WHERE id = %s",
        (locked_until, user_id),
    )


def set_password(conn: Conn, user_id: int, password_hash: str) -> None:
    """Store a new password hash; an invited user becomes active."""
    conn.execute(
        "UPDATE users SET password_hash = %s, failed_sign_ins = 0, locked_until = NULL,"
        " status = CASE WHEN status = 'invited' THEN 'active' ELSE status END WHERE id = %s",
        (password_hash, user_id),
    )


def insert_token(
    conn: Conn, *, token_hash: bytes, user_id: int, purpose: str, expires_at: datetime
) -> None:
    """Store a single-use token (its hash); earlier unused tokens of that purpose lapse."""
    conn.execute(
        "UPDATE user_tokens SET used_at = now()"
        " WHERE user_id = %s AND purpose = %s AND used_at IS NULL",
        (user_id, purpose),
    )
    conn.execute(
        "INSERT INTO user_tokens (token_hash, user_id, purpose, expires_at)"
        " VALUES (%s, %s, %s, %s)",
        (token_hash, user_id, purpose, expires_at),
    )


def use_token(conn: Conn, token_hash: bytes, purpose: str, now: datetime) -> int | None:
    """Spend a live token once: its user's id, or None when unknown, used or expired."""
    row = conn.execute(
        """
        UPDATE user_tokens SET used_at = %(now)s
         WHERE token_hash = %(h)s AND purpose = %(p)s AND used_at IS NULL
           AND expires_at > %(now)s
        RETURNING user_id
        """,
        {"h": token_hash, "p": purpose, "now": now},
    ).fetchone()
    return int(row[0]) if row else None


def insert_session(
    conn: Conn,
    *,
    id_hash: bytes,
    user_id: int | None,
    key_id: int | None,
    csrf_token: str,
    expires_at: datetime,
) -> None:
    """Store a new web session."""
    conn.execute(
        "INSERT INTO web_sessions (id_hash, user_id, key_id, csrf_token, expires_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (id_hash, user_id, key_id, csrf_token, expires_at),
    )


def find_session(conn: Conn, id_hash: bytes, now: datetime) -> WebSession | None:
    """A live session (not ended, not expired)."""
    with conn.cursor(row_factory=class_row(WebSession)) as cur:
        return cur.execute(
            "SELECT user_id, key_id, csrf_token, expires_at FROM web_sessions"
            " WHERE id_hash = %s AND ended_at IS NULL AND expires_at > %s",
            (id_hash, now),
        ).fetchone()


def end_session(conn: Conn, id_hash: bytes) -> None:
    """End one session."""
    conn.execute(
        "UPDATE web_sessions SET ended_at = now() WHERE id_hash = %s AND ended_at IS NULL",
        (id_hash,),
    )


def end_user_sessions(conn: Conn, user_id: int) -> None:
    """End every session of a user (disabled, password changed)."""
    conn.execute(
        "UPDATE web_sessions SET ended_at = now() WHERE user_id = %s AND ended_at IS NULL",
        (user_id,),
    )


def organisation_name(conn: Conn, customer_id: int | None, partner_id: int | None) -> str:
    """The display name of a customer or partner (empty when it is neither)."""
    if customer_id is not None:
        row = conn.execute("SELECT name FROM customers WHERE id = %s", (customer_id,)).fetchone()
    elif partner_id is not None:
        row = conn.execute("SELECT name FROM partners WHERE id = %s", (partner_id,)).fetchone()
    else:
        return ""
    return str(row[0]) if row else ""


def organisation_live(conn: Conn, customer_id: int | None, partner_id: int | None) -> bool:
    """Whether the user's customer or partner is not retired (the operator always is)."""
    if customer_id is None and partner_id is None:
        return True
    row = conn.execute(
        "SELECT retired_at IS NULL FROM customers WHERE id = %s"
        if customer_id is not None
        else "SELECT retired_at IS NULL FROM partners WHERE id = %s",
        (customer_id if customer_id is not None else partner_id,),
    ).fetchone()
    return bool(row and row[0])


def update_user(conn: Conn, user_id: int, values: dict[str, Any]) -> User | None:
    """Set a user's columns; disabling stamps ``disabled_at``, enabling clears it."""
    extra = []
    if values.get("status") == "disabled":
        extra.append("disabled_at = now()")
    elif "status" in values:
        extra.append("disabled_at = NULL")
    return update_row(conn, "users", User, user_id, values, extra_sets=extra)


def organisation_id(
    conn: Conn, *, customer_slug: str | None, partner_code: str | None
) -> int | None:
    """The id of the live customer with ``customer_slug`` or partner with ``partner_code``."""
    if customer_slug is not None:
        row = conn.execute(
            "SELECT id FROM customers WHERE slug = %s AND retired_at IS NULL", (customer_slug,)
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT id FROM partners WHERE code = %s AND retired_at IS NULL", (partner_code,)
        ).fetchone()
    return int(row[0]) if row else None


# --- single sign-on --------------------------------------------------------------------------


def find_provider(
    conn: Conn, organisation: str, customer_id: int | None, partner_id: int | None
) -> SsoProviderRecord | None:
    """The single sign-on provider of one organisation."""
    with conn.cursor(row_factory=class_row(SsoProviderRecord)) as cur:
        return cur.execute(
            "SELECT * FROM sso_providers WHERE organisation = %s"
            " AND customer_id IS NOT DISTINCT FROM %s AND partner_id IS NOT DISTINCT FROM %s",
            (organisation, customer_id, partner_id),
        ).fetchone()


def get_provider(conn: Conn, provider_id: int) -> SsoProviderRecord | None:
    """One provider by id."""
    with conn.cursor(row_factory=class_row(SsoProviderRecord)) as cur:
        return cur.execute("SELECT * FROM sso_providers WHERE id = %s", (provider_id,)).fetchone()


def provider_for_domain(conn: Conn, domain: str) -> SsoProviderRecord | None:
    """The enabled provider that claims an email domain."""
    with conn.cursor(row_factory=class_row(SsoProviderRecord)) as cur:
        return cur.execute(
            "SELECT p.* FROM sso_domains d JOIN sso_providers p ON p.id = d.provider_id"
            " WHERE d.domain = %s AND p.enabled",
            (domain,),
        ).fetchone()


def required_provider(conn: Conn, domain: str, user: User | None) -> SsoProviderRecord | None:
    """The enabled provider that requires single sign-on of an address: the one claiming its
    domain, or the one of the user's organisation."""
    org = (user.organisation, user.customer_id, user.partner_id) if user else (None, None, None)
    with conn.cursor(row_factory=class_row(SsoProviderRecord)) as cur:
        return cur.execute(
            "SELECT p.* FROM sso_providers p WHERE p.enabled AND p.required AND ("
            " EXISTS (SELECT 1 FROM sso_domains d WHERE d.provider_id = p.id AND d.domain = %s)"
            " OR (p.organisation = %s AND p.customer_id IS NOT DISTINCT FROM %s"
            " AND p.partner_id IS NOT DISTINCT FROM %s)) ORDER BY p.id LIMIT 1",
            (domain, *org),
        ).fetchone()


def insert_provider(conn: Conn, values: dict[str, Any]) -> SsoProviderRecord:
    """Store an organisation's provider."""
    return insert_row(conn, "sso_providers", SsoProviderRecord, values)


def update_provider(conn: Conn, provider_id: int, values: dict[str, Any]) -> SsoProviderRecord:
    """Change a provider's settings."""
    row = update_row(
        conn,
        "sso_providers",
        SsoProviderRecord,
        provider_id,
        values,
        extra_sets=["updated_at = now()"],
    )
    assert row is not None
    return row


def delete_provider(conn: Conn, provider_id: int) -> None:
    """Remove a provider and its domains."""
    conn.execute("DELETE FROM sso_domains WHERE provider_id = %s", (provider_id,))
    conn.execute("DELETE FROM sso_providers WHERE id = %s", (provider_id,))


def provider_domains(conn: Conn, provider_id: int) -> list[str]:
    """The domains a provider claims, sorted."""
    rows = conn.execute(
        "SELECT domain FROM sso_domains WHERE provider_id = %s ORDER BY domain", (provider_id,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def replace_domains(
    conn: Conn, provider_id: int, customer_id: int | None, domains: list[str]
) -> list[str]:
    """Make ``domains`` the provider's claims; the ones another provider holds are not taken
    and come back (the unique key decides, whatever the caller may see)."""
    held = set(provider_domains(conn, provider_id))
    conn.execute(
        "DELETE FROM sso_domains WHERE provider_id = %s AND domain <> ALL (%s::text[])",
        (provider_id, domains),
    )
    taken = []
    for domain in domains:
        if domain in held:
            continue
        row = conn.execute(
            "INSERT INTO sso_domains (domain, provider_id, customer_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (domain) DO NOTHING RETURNING domain",
            (domain, provider_id, customer_id),
        ).fetchone()
        if row is None:
            taken.append(domain)
    return taken


def find_user_by_identity(conn: Conn, issuer: str, subject: str) -> UserAuth | None:
    """The user linked to a provider's subject, locked for update."""
    with conn.cursor(row_factory=class_row(UserAuth)) as cur:
        return cur.execute(
            "SELECT * FROM users WHERE external_issuer = %s AND external_subject = %s FOR UPDATE",
            (issuer, subject),
        ).fetchone()


def link_identity(conn: Conn, user_id: int, issuer: str, subject: str) -> None:
    """Link a user to a provider's subject: it signs in there from now on (an invited user
    becomes active)."""
    conn.execute(
        "UPDATE users SET external_issuer = %s, external_subject = %s, sign_in_method = 'oidc',"
        " status = CASE WHEN status = 'invited' THEN 'active' ELSE status END WHERE id = %s",
        (issuer, subject, user_id),
    )
