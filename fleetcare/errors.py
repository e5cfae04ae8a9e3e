"""Typed domain errors. Each carries the HTTP status and the domain code the API renders.

The API renders every error as an RFC 9457 problem document (``type``, ``title``, ``status``,
``detail``) plus ``code``, the machine-readable name (``asset_not_found``,
``subscription_inactive``, ...). A domain raises the class that says what went wrong and,
where the class is generic, the code that names the thing:
``NotFound("asset 7 not found", code="asset_not_found")``.
"""

from __future__ import annotations

from typing import ClassVar

PROBLEM_TYPE_PREFIX = "urn:fleetcare:problem:"


def problem_type(code: str) -> str:
    """The problem document's ``type`` URI for ``code``."""
    return PROBLEM_TYPE_PREFIX + code


class FleetcareError(Exception):
    """Base of every domain error; ``code`` is the machine-readable name, ``title`` its summary."""

    status_code: ClassVar[int] = 400
    code: str = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class NotFound(FleetcareError):
    """The object does not exist, or the caller may not see it (both answer 404)."""

    status_code = 404
    code = "not_found"
    title = "Not found"


class Conflict(FleetcareError):
    """The request collides with existing state (duplicate reference, wrong state)."""

    status_code = 409
    code = "conflict"
    title = "Conflict"


class Invalid(FleetcareError):
    """The request is well-formed but its content breaks a domain rule."""

    status_code = 422
    code = "invalid"
    title = "Invalid request"


class Unauthorized(FleetcareError):
    """No valid credentials."""

    status_code = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(FleetcareError):
    """Valid credentials that may not do this."""

    status_code = 403
    code = "forbidden"
    title = "Forbidden"


class PayloadTooLarge(FleetcareError):
    """The request body is larger than the configured limit."""

    status_code = 413
    code = "payload_too_large"
    title = "Payload too large"


class TooManyRequests(FleetcareError):
    """The source sent too many requests of a limited kind (e.g. failed authentications)."""

    status_code = 429
    code = "too_many_requests"
    title = "Too many requests"


class MigrationError(FleetcareError):
    """Migrations cannot be applied safely (an applied file was edited, a file is missing)."""

    status_code = 500
    code = "migration_error"
    title = "Migration error"


class ServiceUnavailable(FleetcareError):
    """A backing service (database, broker) cannot be reached."""

    status_code = 503
    code = "service_unavailable"
    title = "Service unavailable"


class ReplicaLagging(ServiceUnavailable):
    """The read replica is further behind the primary than the configured limit."""

    code = "replica_lagging"
    title = "Read replica lagging"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class InvalidRows(Invalid):
    """Rows of an upload refused: ``problems`` says, per row and field, what is wrong; the
    API renders them as the problem document's ``problems`` (``rows[3].to``, ...)."""

    code = "invalid_rows"

    def __init__(self, detail: str, problems: list[tuple[str, str]], *, code: str | None = None):
        super().__init__(detail, code=code)
        self.problems = problems
