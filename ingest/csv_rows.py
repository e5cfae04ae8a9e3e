"""CSV rows of a device's message that go on past a line the csv module refuses."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator

Unreadable = Callable[[int, str], None]  # (line number, why) of a line that cannot be read


def csv_rows(
    lines: Iterable[str], delimiter: str, unreadable: Unreadable | None = None
) -> Iterator[list[str]]:
    """The stripped fields of each non-empty CSV line. A line the csv module refuses (a field
    past its 131,072-character limit, a lone CR) is told to ``unreadable`` and the rest is
    read; without ``unreadable`` its ``csv.Error`` is raised."""
    for _, fields in numbered_csv_rows(lines, delimiter, unreadable):
        yield fields


def numbered_csv_rows(
    lines: Iterable[str], delimiter: str, unreadable: Unreadable | None = None
) -> Iterator[tuple[int, list[str]]]:
    """``csv_rows`` with the line number each row ends on (blank lines counted)."""
    reader = csv.reader(lines, delimiter=delimiter)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if unreadable is None:
                raise
            unreadable(reader.line_num, str(exc))
            continue
        if fields and any(f.strip() for f in fields):
            yield reader.line_num, [f.strip() for f in fields]
