"""``docs/access.md``, generated from the code: the roles, what each may do, and the action
every route and dashboard page needs (``fleetcare access table`` prints it; a test compares it
with the committed file, so the document cannot drift from the code)."""

from __future__ import annotations

from collections import defaultdict

from api.permissions import ACTIONS, DEVICE_ROUTES, ORDER_BOARD, PUBLIC
from fleet.access import ACCESS_ROLES, AREAS, KEY_ROLES, ROLE_ACTIONS, VERBS

HEADER = """# Who may do what

Generated from the code by `fleetcare access table` (`api/access_doc.py`, from
`fleet/access.py` and `api/permissions.py`); `tests/test_access.py` fails when this file
differs. Do not edit by hand.

Everyone who calls fleetcare is a *principal*: a person signed in to the dashboard (session
cookie) or a machine with an API key (`Authorization: Bearer fc_...`). Each belongs to an
organisation — the operator, a customer or a service partner — and holds one role. Every route
and dashboard action needs one action (`<area>:<verb>`); the services ask the same question
(`principal.can(action, resource)`). Another organisation's object answers 404 whatever the
role.
"""


def _roles_short() -> list[str]:
    return [r.replace("operator:", "op:").replace("customer:", "cu:") for r in ACCESS_ROLES]


def _matrix() -> list[str]:
    actions = sorted({a for acts in ROLE_ACTIONS.values() for a in acts} | set(ACTIONS.values()))
    short = _roles_short()
    lines = [
        "## Roles and actions",
        "",
        "`op:` the operator's roles, `cu:` a customer's, `partner:` a partner's. ✓: allowed.",
        "",
        "| action | " + " | ".join(f"`{r}`" for r in short) + " |",
        "|---|" + "---|" * len(short),
    ]
    for action in actions:
        cells = ["✓" if action in ROLE_ACTIONS[r] else "" for r in ACCESS_ROLES]
        lines.append(f"| `{action}` | " + " | ".join(cells) + " |")
    return lines


def _areas() -> list[str]:
    lines = ["## Areas and verbs", "", "| area | covers |", "|---|---|"]
    lines += [f"| `{area}` | {what} |" for area, what in AREAS.items()]
    lines += ["", "| verb | means |", "|---|---|"]
    lines += [f"| `{verb}` | {what} |" for verb, what in VERBS.items()]
    return lines


def _keys() -> list[str]:
    lines = [
        "## API keys",
        "",
        "A key belongs to an organisation and has one of the first version's four roles, each"
        " standing for a role above:",
        "",
        "| key role | acts as |",
        "|---|---|",
    ]
    lines += [f"| `{key}` | `{access}` |" for key, access in KEY_ROLES.items()]
    lines += [
        "",
        "A key may be narrowed with *scopes* (`POST /v1/api-keys` `scopes`): `read` or `write`"
        " (every area), `<area>:read` (the area's reads) or `<area>:write` (every action of the"
        " area). A key without scopes may do everything its role may. A key with scopes makes"
        " only keys within its own scopes. A key may expire (`expires_at`); its `last_used_at`"
        " is kept to the minute.",
    ]
    return lines


def _routes() -> list[str]:
    by_area: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for (method, route), action in sorted(ACTIONS.items(), key=lambda i: (i[0][1], i[0][0])):
        by_area[action.split(":")[0]].append((method, route, action))
    lines = ["## Routes", "", "| route | action | roles |", "|---|---|---|"]
    short = dict(zip(ACCESS_ROLES, _roles_short(), strict=True))
    for area in sorted(by_area):
        for method, route, action in by_area[area]:
            roles = ", ".join(short[r] for r in ACCESS_ROLES if action in ROLE_ACTIONS[r])
            lines.append(f"| `{method} {route}` | `{action}` | {roles} |")
    lines += [
        "",
        "The orders board's buttons (`POST /dashboard/orders/{order_id}/{action}`) each need the"
        " API's action of the same name: "
        + ", ".join(f"`{b}` → `{a}`" for b, a in ORDER_BOARD.items())
        + ".",
        "",
        "A device calls "
        + ", ".join(f"`{m} {r}`" for m, r in sorted(DEVICE_ROUTES))
        + " with its own credentials (HTTP Basic), for its customer's assets (and carriers) only.",
        "",
        "Anyone may call: "
        + ", ".join(f"`{m} {r}`" for m, r in sorted(PUBLIC, key=lambda x: (x[1], x[0])))
        + ".",
    ]
    return lines


def access_markdown() -> str:
    """The whole of docs/access.md."""
    parts = [HEADER, *_matrix(), "", *_areas(), "", *_keys(), "", *_routes()]
    return "\n".join(parts) + "\n"
