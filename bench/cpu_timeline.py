"""CPU time of groups of processes sampled during a benchmark phase, from ``/proc``.

The end-to-end ingest bench runs four kinds of process on the same cores (the bench's
publisher, the broker, the ingestor, PostgreSQL backends). Totals say what each costs per
reading; a timeline says who waited for whom: whether PostgreSQL idles while the ingestor
decodes the first batch, how long the last batch takes after the stream ended, how many cores
were busy at all.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    # the command name may hold spaces: fields count from the last ')'
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


@dataclass
class CpuTimeline:
    """Samples the CPU seconds of each group every ``interval_s`` in a background thread."""

    groups: dict[str, list[int]]
    interval_s: float = 0.01
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        now = time.time()
        self.samples.append(
            (now, {k: sum(cpu_seconds(p) for p in pids) for k, pids in self.groups.items()})
        )

    def start(self) -> CpuTimeline:
        self._sample()
        self._thread = threading.Thread(target=self._run, name="cpu-timeline", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def used(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each group used between two wall-clock times (nearest samples)."""
        first = self._at(start)
        last = self._at(end)
        return {k: last[k] - first[k] for k in self.groups}

    def _at(self, t: float) -> dict[str, float]:
        best = min(self.samples, key=lambda s: abs(s[0] - t))
        return best[1]

    def cores(self, start: float, end: float, slices: int) -> list[dict[str, float]]:
        """Cores busy per group in each of ``slices`` equal slices of [start, end]."""
        step = (end - start) / slices
        out = []
        for i in range(slices):
            a, b = start + i * step, start + (i + 1) * step
            used = self.used(a, b)
            out.append({k: v / step for k, v in used.items()})
        return out


def render(cores: list[dict[str, float]]) -> str:
    """One line per group: the cores it kept busy in each slice (``.`` below 0.05)."""
    lines = []
    for group in cores[0]:
        cells = [
            "  . " if c[group] < 0.05 else f"{c[group]:4.1f}" for c in cores
        ]  # ticks are 10 ms: a slice shorter than ~50 ms is coarse
        lines.append(f"  {group:10s}" + "".join(cells))
    total = ["  . " if sum(c.values()) < 0.05 else f"{sum(c.values()):4.1f}" for c in cores]
    lines.append(f"  {'all':10s}" + "".join(total))
    return "\n".join(lines)
