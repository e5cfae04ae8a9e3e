"""The trackers on the demo's carriers: one device per aircraft or truck (``tracker-<carrier>``)
that publishes where its carrier is on its position topic (``<root>/<device>/position``,
docs/telemetry.md#positions-of-carriers), as a GPS tracker or an aircraft's ACARS would, so that
the map of ``fleetcare up`` moves from telemetry.

Each tracker is registered through the API with the customer's own key (as the customer's
systems would) and its secret kept in the data folder (readable by this user only); it speaks
through ``simulators.devices.MqttLink`` (MQTT 5, QoS 1, its own credentials and last will).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from simulators.api_client import ProductAPI
from simulators.devices import MqttLink

log = logging.getLogger(__name__)
SECRETS_FILE = "tracker-secrets.json"


def tracker_ref(carrier_ref: str) -> str:
    """The device ref of a carrier's tracker."""
    return f"tracker-{carrier_ref.replace('.', '-')}"[:64]


def position_topic(topic_root: str, device_ref: str) -> str:
    """The topic a device publishes its carrier's positions on."""
    return f"{topic_root}/{device_ref}/position"


def position_message(carrier_ref: str, at: datetime, where: dict[str, Any]) -> bytes:
    """A native position message: the carrier, the time, and coordinates and/or a station."""
    ts = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"carrier": carrier_ref, "ts": ts, **where})


class PositionFeed:
    """The trackers of one customer's carriers: registered once, connected, publishing."""

    def __init__(self, api: ProductAPI, broker_url: str, topic_root: str, data_dir: Path) -> None:
        self.api = api
        self.broker_url = broker_url
        self.topic_root = topic_root
        self.secrets_path = data_dir / SECRETS_FILE
        self.links: dict[str, MqttLink] = {}  # carrier ref → its tracker's connection
        self.published = 0

    def _secrets(self) -> dict[str, str]:
        try:
            found = json.loads(self.secrets_path.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    def _save(self, secrets: dict[str, str]) -> None:
        self.secrets_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.secrets_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(secrets, indent=1, sort_keys=True))
        tmp.chmod(0o600)
        tmp.replace(self.secrets_path)

    def connect(self, carrier_refs: list[str]) -> int:
        """Register (when new) and connect each carrier's tracker; how many are connected.
        A tracker registered before whose secret this data folder lost is left out (its
        carrier's position then goes through the API)."""
        secrets = self._secrets()
        registered = {d["ref"] for d in self.api.items("/v1/devices")}
        for carrier in carrier_refs:
            ref = tracker_ref(carrier)
            if carrier in self.links:
                continue
            if ref not in secrets:
                if ref in registered:
                    log.warning("tracker %s is registered but its secret is lost", ref)
                    continue
                body = {"ref": ref, "name": f"position tracker of {carrier}"}
                secrets[ref] = self.api.post("/v1/devices", body)["secret"]
                self._save(secrets)
            link = MqttLink(
                self.broker_url,
                ref,
                secrets[ref],
                self.topic_root,
                confirm=False,  # a position is superseded by the next one (docs/telemetry.md)
                topic=position_topic(self.topic_root, ref),
            )
            link.connect()
            self.links[carrier] = link
        return len(self.links)

    def publish(self, carrier_ref: str, at: datetime, where: dict[str, Any]) -> bool:
        """Publish a carrier's position through its tracker; False when it has none."""
        link = self.links.get(carrier_ref)
        if link is None:
            return False
        link.publish(position_message(carrier_ref, at, where))
        self.published += 1
        return True

    def close(self) -> None:
        """Disconnect every tracker (its status goes offline)."""
        for link in self.links.values():
            link.disconnect(timeout=5)
        self.links.clear()
