"""One settings object, read from the environment (prefix ``FLEETCARE_``) at the edge."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    api_port: int = 8000
    log_level: str = "INFO"
    pool_min_size: int = 1
    pool_max_size: int = 10
    # Operator bootstrap: an operator key created by `fleetcare up` when none exists.
    demo: bool = Field(default=True, description="`up` seeds a demo operator and customers.")
    # Webhooks may target private addresses only when the operator allows it (tests, demos).
    webhooks_allow_private: bool = False
    # Ingest: a fixed MQTT client id per ingestor keeps its persistent session across restarts.
    ingest_client_id: str = Field(
        default="fleetcare-ingest-1",
        description="MQTT client id of this ingestor; unique per running ingestor.",
    )
    ingest_shared_subscription: bool = Field(
        default=True,
        description="Subscribe through $share/ingest/... (MQTT 5) so ingestors split the load.",
    )
    ingest_metrics_port: int | None = Field(
        default=None, description="Serve the ingestor's Prometheus /metrics on this port."
    )


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
