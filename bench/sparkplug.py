"""The Sparkplug B phase of ``bench.ingest``: one edge node whose device carries a metric per
asset (declared with an alias in DBIRTH, without a value), then DDATA of 50 metrics by alias,
each with its own timestamp — the same readings as native batch50."""

from __future__ import annotations

from typing import Any

from esio_spb_builder.core import sparkplug_b_pb2 as spb

SPARKPLUG_DEVICE = "bench-spb-node"
GROUP, EDGE_NODE, DEVICE = "bench", "edge-1", "tpms"
DOUBLE, INT64 = 10, 4


def sparkplug_profile(assets: list[str], metric: str) -> dict[str, Any]:
    """The bench's ``sparkplug_b`` profile: metric ``P<i>`` of the device is asset i's."""
    return {
        "name": "bench-spb",
        "format": "sparkplug_b",
        "sparkplug": [
            {
                "group": GROUP,
                "edge_node": EDGE_NODE,
                "device": DEVICE,
                "fleetcare_device": SPARKPLUG_DEVICE,
                "metrics": {f"P{i}": {"asset": a, "metric": metric} for i, a in enumerate(assets)},
            }
        ],
    }


def topic(kind: str) -> str:
    base = f"spBv1.0/{GROUP}/{kind}/{EDGE_NODE}"
    return f"{base}/{DEVICE}" if kind.startswith("D") else base


def births(n_assets: int, ts_ms: int) -> list[tuple[str, bytes]]:
    """NBIRTH (seq 0) and DBIRTH (seq 1) declaring alias i for metric P<i>, values null."""
    nb = spb.Payload(timestamp=ts_ms, seq=0)
    m = nb.metrics.add()
    m.name, m.datatype, m.long_value = "bdSeq", INT64, 0
    db = spb.Payload(timestamp=ts_ms, seq=1)
    for i in range(n_assets):
        m = db.metrics.add()
        m.name, m.alias, m.datatype, m.is_null = f"P{i}", i, DOUBLE, True
    return [(topic("NBIRTH"), nb.SerializeToString()), (topic("DBIRTH"), db.SerializeToString())]


def ddata_payloads(
    n_assets: int, n: int, per_message: int, value: Any, time_ms: Any
) -> list[bytes]:
    """DDATA by alias: reading i is asset i % n_assets at ``time_ms(i)`` with ``value(i)``."""
    out = []
    for j, start in enumerate(range(0, n, per_message)):
        p = spb.Payload(timestamp=time_ms(start), seq=(2 + j) % 256)
        for i in range(start, min(start + per_message, n)):
            m = p.metrics.add()
            m.alias, m.timestamp, m.double_value = i % n_assets, time_ms(i), value(i)
        out.append(p.SerializeToString())
    return out
