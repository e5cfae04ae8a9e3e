"""Typed domain errors. Each carries the HTTP status the API renders it with."""

from __future__ import annotations


class FleetcareError(Exception):
    """Base of every domain error; ``code`` is the machine-readable name."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(FleetcareError):
    """The object does not exist, or the caller may not see it (both answer 404)."""

    status_code = 404
    code = "not_found"


class Conflict(FleetcareError):
    """The request collides with existing state (duplicate reference, wrong state)."""

    status_code = 409
    code = "conflict"


class Invalid(FleetcareError):
    """The request is well-formed but its content breaks a domain rule."""

    status_code = 422
    code = "invalid"


class Unauthorized(FleetcareError):
    """No valid credentials."""

    status_code = 401
    code = "unauthorized"


class Forbidden(FleetcareError):
    """Valid credentials that may not do this."""

    status_code = 403
    code = "forbidden"


class MigrationError(FleetcareError):
    """Migrations cannot be applied safely (an applied file was edited, a file is missing)."""

    status_code = 500
    code = "migration_error"


class ServiceUnavailable(FleetcareError):
    """A backing service (database, broker) cannot be reached."""

    status_code = 503
    code = "service_unavailable"
