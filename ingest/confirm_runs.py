"""Confirmation runs: what the ingestor may tell a device it has handled (docs/telemetry.md,
"Confirmation: acknowledged means stored").

Within one uninterrupted ingestor session a device's QoS 1 messages arrive in the order they
were sent, with no gaps. So per device the ingestor follows the current *run*: the numbers
(``seq``) it received since the last point where loss was possible, and confirms
``{"seq": hi, "from": lo}``: every message of the device numbered from ``lo`` to ``hi`` was
handled (stored, a duplicate, or quarantined). A new run starts for a device when

* the process starts (the runs live in memory only);
* the message came in a later *epoch*: the network thread bumps the epoch when the broker
  answers a CONNACK without our session (a fresh subscription: anything may have been dropped
  while there was none), and when it sees the broker restart or its dropped-messages counter
  grow; each message carries the epoch it was received in (``RawMessage.epoch``);
* the device's number does not grow (a resend of older messages).

``RunTracker.confirm`` is fed the numbered messages of each batch in arrival order, once the
batch has committed and in batch order; it returns the confirmations to publish, one per run
segment of a device in the batch, in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Confirmation:
    """``{"seq": hi, "from": lo}`` for one device."""

    device: str
    lo: int
    hi: int

    def payload(self) -> bytes:
        return b'{"seq":%d,"from":%d}' % (self.hi, self.lo)


class RunTracker:
    """Per device, its current run (epoch, lo, hi). Not thread-safe: call it in batch order
    under the lock that orders acknowledgements."""

    def __init__(self) -> None:
        self._runs: dict[str, tuple[int, int, int]] = {}

    def confirm(self, seen: Iterable[tuple[str, int, int]]) -> list[Confirmation]:
        """``seen``: (device, seq, epoch) of a committed batch's numbered messages, in arrival
        order. Returns one confirmation per run segment of each device, in the order the
        segments ended (a device's last one is its current run)."""
        runs = self._runs
        # per device, the run segment open in this batch (index into ``out``)
        open_at: dict[str, int] = {}
        out: list[Confirmation] = []
        for device, seq, epoch in seen:
            run = runs.get(device)
            # a new run (lo = seq): the device's first message, a new epoch, or a step back
            lo = run[1] if run is not None and run[0] == epoch and seq > run[2] else seq
            runs[device] = (epoch, lo, seq)
            at = open_at.get(device)
            if at is not None and out[at].lo == lo:
                out[at] = Confirmation(device, lo, seq)  # the same run grew
            else:
                open_at[device] = len(out)
                out.append(Confirmation(device, lo, seq))
        return out
