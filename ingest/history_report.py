"""The report of a history import (``ingest.history``): what it read, stored, rejected and
warned about, with the first example of each reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ImportReport:
    """What an import read, stored and rejected (with one example per reason)."""

    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_rejected: int = 0
    values_stored: int = 0
    values_duplicate: int = 0
    values_conflicting: int = 0
    values_rejected: int = 0
    assets_created: int = 0
    assets: int = 0
    lives_recorded: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    warnings: Counter[str] = field(default_factory=Counter)
    warning_examples: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def reject(
        self, reason: str, count: int, example: str | Callable[[], str], *, rows: bool
    ) -> None:
        """Count ``count`` rejected rows (or values) for ``reason``; ``example`` (the first
        one, where it is and what is wrong) is kept once per reason, made only then."""
        if count <= 0:
            return
        self.reasons[reason] += count
        if reason not in self.examples:
            self.examples[reason] = (example if isinstance(example, str) else example())[:300]
        if rows:
            self.rows_rejected += count
        else:
            self.values_rejected += count

    def warn(self, reason: str, count: int, example: Callable[[], str]) -> None:
        """Count ``count`` values kept as they were stored but worth a look (``reason``);
        the first example is kept once per reason."""
        if count <= 0:
            return
        self.warnings[reason] += count
        if reason not in self.warning_examples:
            self.warning_examples[reason] = example()[:400]

    @property
    def rejected(self) -> int:
        """Rows and values rejected so far."""
        return self.rows_rejected + self.values_rejected

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able values."""
        return {
            "files": self.files,
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "values_stored": self.values_stored,
            "values_duplicate": self.values_duplicate,
            "values_conflicting": self.values_conflicting,
            "values_rejected": self.values_rejected,
            "assets": self.assets,
            "assets_created": self.assets_created,
            "lives_recorded": self.lives_recorded,
            "rejected": {
                r: {"count": n, "first": self.examples[r]} for r, n in self.reasons.items()
            },
            "warnings": {
                r: {"count": n, "first": self.warning_examples[r]} for r, n in self.warnings.items()
            },
            "seconds": round(self.seconds, 3),
        }


def strict_stop(report: ImportReport, path: Path, stored_some: bool) -> str:
    """What stops a strict import: the first fault met, and what was kept of the file."""
    reason, example = next(iter((report.examples or report.warning_examples).items()))
    more = report.rejected + report.values_conflicting - 1
    return f"{example} ({reason}{f'; {more:,} more rejected' if more else ''}); " + (
        f"the rows of {path.name} before the batch holding it are stored, run the import "
        "again once the file is fixed"
        if stored_some
        else f"nothing of {path.name} stored"
    )
