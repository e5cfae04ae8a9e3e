"""One settings object, read from the environment (prefix ``FLEETCARE_``) at the edge."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# the longest audit retention (a century): a longer one's cutoff falls before the dates a
# timestamp holds; leave it unset to keep the trail for ever
MAX_RETENTION_DAYS = 36525


class Settings(BaseSettings):
    """fleetcare's configuration. Every field can be set as ``FLEETCARE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FLEETCARE_", env_file=None, extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; unset: 127.0.0.1:5432 if it answers, else embedded; "
        "'embedded' forces the embedded server.",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="MQTT URL (mqtt://user:pass@host:port); unset: our own Mosquitto, else "
        "127.0.0.1:1883, else amqtt; 'mosquitto' or 'amqtt' forces that broker.",
    )
    topic_root: str = Field(
        default="fleetcare/v1",
        description="MQTT topic root; devices publish to <topic_root>/<device>/telemetry.",
    )
    data_dir: Path = Field(
        default=Path(".fleetcare"),
        description="Folder for embedded services' data, logs and generated broker files.",
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    pool_min_size: int = 1
    pool_max_size: int = 10
    read_database_url: str | None = Field(
        default=None,
        description="A streaming replica of the database: the dashboard and read-only API "
        "routes read from it (writes and sign-in stay on the primary); unset: the primary.",
    )
    read_max_lag_s: float = Field(
        default=10.0,
        gt=0,
        description="A replica further behind than this answers reads with 503 "
        "replica_lagging and Retry-After instead of stale data.",
    )
    # Operator bootstrap: an operator key created by `fleetcare up` when none exists.
    demo: bool = Field(default=True, description="`up` seeds a demo operator and customers.")
    # Webhooks may target private addresses only when the operator allows it (tests, demos).
    webhooks_allow_private: bool = False
    # Ingest: a fixed MQTT client id per ingestor keeps its persistent session across restarts.
    ingest_client_id: str = Field(
        default="fleetcare-ingest-1",
        description="MQTT client id of this ingestor; unique per running ingestor.",
    )
    # Mosquitto 2.0 forgets shared subscriptions when it restarts and drops what devices
    # publish until the ingestor re-subscribes; EMQX and HiveMQ keep them. Only a broker
    # that keeps them may carry ingest on one: the default is the per-ingestor session.
    broker_keeps_shared_subscriptions: bool = Field(
        default=False,
        description="The broker keeps shared subscriptions across restarts (EMQX, HiveMQ): "
        "ingestors then split the load through $share/ingest/...; otherwise each ingestor "
        "holds a plain subscription in its own persistent session.",
    )
    # Sparkplug B 3.0: the ingestor is a primary host application and announces its STATE on
    # spBv1.0/STATE/<host id>; host ids must be unique, so each ingestor has its own.
    sparkplug_host_id: str | None = Field(
        default=None,
        pattern=r"^[^/+#\s]{1,200}$",
        description="Sparkplug B primary host id of this ingestor (its STATE topic "
        "spBv1.0/STATE/<id>; edge nodes name it as their primary host); default: the ingest "
        "client id. Unique per running ingestor.",
    )
    ingest_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve the ingestor's Prometheus /metrics on this port.",
    )
    api_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="largest request body the API reads; larger is refused with 413",
    )
    auth_failure_limit: int = Field(
        default=20,
        ge=1,
        description="failed authentications of one credential from one address within the "
        "window before that credential is answered 429 from there",
    )
    # Much higher than the per-credential limit: ten clients behind one NAT, proxy or
    # `fleetcare up` may each fail 20 times before the address is held back; still bounds
    # guessing with ever new keys (api/auth_limit.py explains the numbers).
    auth_failure_address_limit: int = Field(
        default=200,
        ge=1,
        description="failed authentications from one address, over all credentials, within "
        "the window before credentials not already proven from there are answered 429",
    )
    auth_failure_window_s: float = Field(
        default=60.0, gt=0, description="window of the failed-authentication limit, seconds"
    )
    # Dashboard sessions are signed with this secret. Unset: a random secret per process, so
    # sessions end when the process restarts and are not shared between API workers; set
    # FLEETCARE_SESSION_SECRET (same value everywhere) when running several.
    session_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="secret that signs dashboard session cookies; default: random per process",
    )
    session_max_age_s: int = Field(default=12 * 3600, ge=60, description="session lifetime")
    session_https_only: bool = Field(
        default=False, description="mark the session cookie Secure (set behind HTTPS)"
    )
    # People: an account locks for `user_lockout_s` after `user_lockout_failures` failed
    # sign-ins in a row; invitation and reset links expire; links start with `public_url`.
    user_lockout_failures: int = Field(
        default=5, ge=1, le=1000, description="failed sign-ins in a row that lock an account"
    )
    user_lockout_s: float = Field(default=900.0, gt=0, description="how long an account locks")
    invitation_ttl_h: float = Field(default=72.0, gt=0, description="invitation link lifetime")
    password_reset_ttl_min: float = Field(
        default=60.0, gt=0, description="password reset link lifetime"
    )
    # argon2id's cost for people's passwords; unset: the library's current parameters (3
    # passes, 64 MiB, 4 lanes), what production uses. Lowered only where the hashes guard
    # nothing (the test suite); a stored hash of other parameters is re-made at its next sign-in.
    password_hash_time_cost: int | None = Field(
        default=None, ge=1, description="argon2id passes; unset: the library's"
    )
    password_hash_memory_kib: int | None = Field(
        default=None, ge=8, description="argon2id memory, KiB; unset: the library's"
    )
    password_hash_parallelism: int | None = Field(
        default=None, ge=1, description="argon2id lanes; unset: the library's"
    )
    public_url: str | None = Field(
        default=None,
        description="where people reach the dashboard: the base of invitation and reset links "
        "and of the single sign-on callback; default: http://<api_host>:<api_port>",
    )
    # The audit trail's retention: `fleetcare audit purge` deletes records older than this
    # (unset: the trail is kept for ever).
    audit_retention_days: float | None = Field(
        default=None,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="days the audit trail is kept; unset: for ever",
    )
    # Single sign-on: how long fleetcare waits for an organisation's OpenID Connect provider
    # (discovery, code exchange, signing keys), and how long a started sign-in may take.
    sso_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="timeout of each call to a sign-in provider"
    )
    sso_pending_ttl_s: float = Field(
        default=600.0, gt=0, description="how long a single sign-on started may take to finish"
    )
    # Fleet health: due within `dashboard_due_days` is "due", within `dashboard_watch_days`
    # is "watch", past the conservative due date is "overdue".
    dashboard_due_days: float = Field(default=7.0, gt=0)
    dashboard_watch_days: float = Field(default=30.0, gt=0)

    @property
    def public_base_url(self) -> str:
        """The base of the links people get: ``public_url``, else the API's own address (so
        that an API on another port, ``up --port`` or FLEETCARE_API_PORT, links to itself)."""
        return self.public_url or f"http://{self.api_host}:{self.api_port}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]


def quick_start_settings(settings: Settings) -> Settings:
    """The settings of ``fleetcare up``, the quick start on one machine: webhooks may go to
    private addresses (its demo receiver listens on loopback), in the API as in its workers."""
    return settings.model_copy(update={"webhooks_allow_private": True})
