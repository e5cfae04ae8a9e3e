"""A simulated fleet's gateways as Sparkplug B edge nodes (``fleetcare simulate --sparkplug``).

Each gateway of the chosen kinds becomes a :class:`~simulators.sparkplug_edge.SparkplugEdgeNode`
of group ``group`` whose edge node id is the gateway's device ref and whose Sparkplug devices
are its assets (device id = asset ref, metric names = the kind's metric names). The
``sparkplug_b`` profile that maps them back onto the fleet (:func:`sparkplug_profile`) is applied
at registration like any customer's. :class:`SparkplugLink` plays the part of the gateway's
MQTT link for the fleet runner: the gateway's batches become readings the node records, stores
while its primary host is away, and forwards.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from simulators.fleet import Fleet
from simulators.schemas import DeviceRef
from simulators.sparkplug_edge import SparkplugEdgeNode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SparkplugSetup:
    """Which gateways speak Sparkplug B, in which group, waiting for which primary host."""

    group: str
    primary_host: str | None
    kinds: frozenset[str]


def profile_name(group: str) -> str:
    """The name of the profile that maps a simulated group."""
    return f"sim-spb-{group}"[:63]


def sparkplug_profile(fleet: Fleet, setup: SparkplugSetup) -> dict[str, Any]:
    """The ``sparkplug_b`` profile document of the fleet's Sparkplug gateways."""
    entries = []
    for device in fleet.devices:
        if device.kind not in setup.kinds:
            continue
        names = [m.name for m in fleet.kinds[device.kind].population.kind.metrics]
        for asset in device.assets:
            entries.append(
                {
                    "group": setup.group,
                    "edge_node": device.ref,
                    "device": asset,
                    "fleetcare_device": device.ref,
                    "metrics": {n: {"asset": asset, "metric": n} for n in names},
                }
            )
    return {"name": profile_name(setup.group), "format": "sparkplug_b", "sparkplug": entries}


def _epoch_ms(ts: Any) -> int:
    if type(ts) is int:
        return ts
    return int(datetime.fromisoformat(str(ts)).timestamp() * 1000)


class SparkplugLink:
    """A gateway's connection as a Sparkplug B edge node (the fleet runner's ``Link``).

    ``publish`` takes the gateway's batch payloads (``{"readings": [...]}``) and records each
    reading in the node; payloads that are not batches of the kind's metrics (the malformed
    payloads of ``--malformed-rate``) have no Sparkplug form and are counted in ``not_sent``.
    ``disconnect`` ends the node's session (NDEATH); what it still holds is kept and sent after
    the next ``connect``, once the primary host is online.
    """

    def __init__(
        self,
        broker_url: str,
        device: DeviceRef,
        metrics: Collection[str],
        secret: str,
        setup: SparkplugSetup,
        **node_options: Any,
    ) -> None:
        self.node = SparkplugEdgeNode(
            broker_url,
            setup.group,
            device.ref,
            {asset: list(metrics) for asset in device.assets},
            primary_host=setup.primary_host,
            username=device.ref,
            password=secret,
            **node_options,
        )
        self._active = False
        self.not_sent = 0

    @property
    def active(self) -> bool:
        return self._active

    def connect(self, timeout: float = 10.0) -> None:
        """Start the node; raise when the broker refuses it (bad credentials, no broker)."""
        self.node.answered.clear()
        self.node.start()
        if not self.node.answered.wait(timeout) or self.node.refused:
            reason = self.node.refused or f"no answer within {timeout:.0f} s"
            self.node.stop(0)
            raise ConnectionError(f"edge node {self.node.edge_node}: broker refused: {reason}")
        self._active = True

    def publish(self, payload: bytes) -> None:
        """Record the readings of one batch payload in the node."""
        try:
            readings = orjson.loads(payload)["readings"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.not_sent += 1
            return
        for r in readings:
            try:
                self.node.record(r["asset"], _epoch_ms(r["ts"]), r["metrics"])
            except (KeyError, TypeError, ValueError) as exc:
                log.debug("%s: no Sparkplug form for %r: %s", self.node.edge_node, r, exc)
                self.not_sent += 1

    def disconnect(self, *, send_will: bool = False, timeout: float = 30.0) -> None:
        """End the node's session (NDEATH either way: ``send_will`` is the same here)."""
        self.node.stop(timeout)
        self._active = False
