"""Reading history files for ``ingest.history``: CSV and whitespace-separated text in blocks
of string columns, Parquet in row groups (pyarrow); memory bounded by the block, not the file."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from fleetcare.errors import Invalid
from ingest.profiles import CompiledProfile
from ingest.times import as_number

BLOCK_BYTES = 4 * 1024 * 1024  # text read per batch
PARQUET_BATCH_ROWS = 131_072
PARQUET_SUFFIXES = (".parquet", ".pq")

Locate = Callable[[int], str]  # a batch's row index → where it is in its file ("x.txt:12")


def not_a_file(path: Path) -> str:
    """Why ``path``, which ``is_file()`` refused, cannot be imported."""
    if not path.exists():
        return "no such file"
    return "a directory, not a file" if path.is_dir() else "not a regular file"


@dataclass
class _Block:
    """A block of text rows as pyarrow reads them, to tell a row's line in the file: pyarrow
    numbers the non-empty lines it reads (from 1), skipping blank ones and rows it refused."""

    name: str
    data: bytes
    first_line: int  # the file's line number of the block's first line
    refused: set[int] = field(default_factory=set)  # pyarrow's numbers of skipped rows
    _lines: list[int] | None = None  # file line of each non-empty line, built when asked

    def _non_empty(self) -> list[int]:
        if self._lines is None:
            self._lines = [
                self.first_line + i
                for i, line in enumerate(self.data.split(b"\n"))
                if line.strip(b"\r")
            ]
        return self._lines

    def line_of_number(self, number: int) -> int:
        """The file line of pyarrow's row ``number`` (1-based, blank lines not counted)."""
        lines = self._non_empty()
        return lines[number - 1] if 0 < number <= len(lines) else self.first_line

    def where(self, row: int) -> str:
        """``name:line`` of the table's row ``row`` (0-based)."""
        lines = self._non_empty()
        kept = [n for n in range(1, len(lines) + 1) if n not in self.refused]
        line = lines[kept[row] - 1] if 0 <= row < len(kept) else self.first_line
        return f"{self.name}:{line}"


def text_batches(
    path: Path, profile: CompiledProfile, bad_row_seen: Callable[[str], None]
) -> Iterator[tuple[pa.Table, int, Locate]]:
    """Blocks of ``path`` as tables (every column a string), the bytes read so far and where
    each row is in the file; a row of the wrong number of columns is skipped and told to
    ``bad_row_seen`` with its line (``x.txt:7: 25 columns, expected 26: ...``)."""
    doc = profile.doc
    whitespace = profile.format == "text"
    names: list[str] | None = None if doc.header else list(doc.columns or [])
    done = 0
    next_line = 1  # the file line the next block starts at
    block = _Block(path.name, b"", 1)

    def bad_row(row: Any) -> str:
        number = row.number if row.number is not None else 0
        block.refused.add(number)
        bad_row_seen(
            f"{path.name}:{block.line_of_number(number)}: {row.actual_columns} columns, "
            f"expected {row.expected_columns}: {_as_read(row.text or '')[:120]!r}"
        )
        return "skip"

    def _as_read(text: str) -> str:  # a text row as the file has it, not as the fields we made
        return text.replace(FIELD_SEPARATOR, " ") if whitespace else text

    with path.open("rb") as f:
        rest = b""
        first_chunk = True
        while True:
            chunk = f.read(BLOCK_BYTES)
            done += len(chunk)
            if first_chunk:  # a UTF-8 byte order mark (Windows editors write one) is no data
                chunk, first_chunk = chunk.removeprefix(b"\xef\xbb\xbf"), False
            data = rest + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    rest = data
                    continue
                data, rest = data[:cut], data[cut:]
            elif not data:
                return
            else:
                rest = b""
            if whitespace:
                data = whitespace_to_fields(data)
            if names is None:  # the header line names the columns
                first, _, data = data.partition(b"\n")
                _check_utf8(path, _Block(path.name, first, 1))
                text = first.decode("utf-8").strip()
                try:
                    names = next(profile.split_lines([text]), [])
                except csv.Error as exc:  # e.g. a file whose lines end in a lone CR
                    raise Invalid(f"{path.name}:1 (the header): {exc}") from None
                profile.row_reader(names)  # every field named by the profile is a column
                next_line += 1
            block = _Block(path.name, data, next_line)
            next_line += data.count(b"\n")
            if not data.isascii():  # bytes that are not UTF-8: named here, not deep in pyarrow
                _check_utf8(path, block)
            if data.strip():
                try:
                    table = pcsv.read_csv(
                        io.BytesIO(data),
                        read_options=pcsv.ReadOptions(column_names=names, use_threads=False),
                        parse_options=pcsv.ParseOptions(
                            delimiter=FIELD_SEPARATOR if whitespace else doc.delimiter,
                            # a quote in a text row is a character of its field, as in a
                            # message the same profile reads; never CSV quoting
                            quote_char=False if whitespace else '"',
                            invalid_row_handler=bad_row,
                            ignore_empty_lines=True,
                        ),
                        convert_options=pcsv.ConvertOptions(
                            column_types=dict.fromkeys(names, pa.string()),
                            strings_can_be_null=False,
                        ),
                    )
                except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                    raise Invalid(f"{path.name}: cannot read as {profile.format}: {exc}") from None
                yield table, done, block.where
            if not chunk:
                return


def _check_utf8(path: Path, block: _Block) -> None:
    """Raise ``Invalid`` naming the line of the first bytes of ``block`` that are not UTF-8."""
    try:
        block.data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = block.first_line + block.data.count(b"\n", 0, bad.start)
        byte = block.data[bad.start : bad.start + 1].hex()
        raise Invalid(
            f"{path.name}:{line}: not UTF-8 text (byte 0x{byte}); save the file as UTF-8"
        ) from None


def as_text(column: pa.ChunkedArray, field_name: str) -> pa.ChunkedArray:
    """A column of ids or names as text: a binary cell that is not UTF-8 keeps its bytes as
    replacement characters (no id or name of ours has them, so it is refused by name); a
    column of lists or records has no text form and refuses the file."""
    try:
        return pc.cast(column, pa.string())
    except pa.ArrowNotImplementedError:
        raise Invalid(
            f"column {field_name!r} holds {column.type}, not ids or names (text or numbers)"
        ) from None
    except pa.ArrowInvalid:  # binary that is not UTF-8
        cells = [
            c.decode("utf-8", errors="replace") if isinstance(c, bytes) else c
            for c in column.to_pylist()
        ]
        return pa.chunked_array([pa.array(cells, pa.string())])


# whitespace (as ``bytes.split`` sees it) within a line → space; space → the separator. The
# separator is a tab, which the first step leaves in no field: a comma (a decimal comma) or a
# quote stays in its field, as ``str.split`` keeps it when a message is read by the profile.
FIELD_SEPARATOR = "\t"
_OTHER_SPACE_TO_SPACE = bytes.maketrans(b"\t\x0b\x0c", b"   ")
_SPACE_TO_SEPARATOR = bytes.maketrans(b" ", FIELD_SEPARATOR.encode())


def whitespace_to_fields(data: bytes) -> bytes:
    """Lines of whitespace-separated fields as tab-separated ones: what
    ``b"\\n".join(b"\\t".join(line.split()) for line in data.splitlines())`` gives, in a few
    passes over the whole block in C (that per-line loop was a third of the import's time)."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    data = data.translate(_OTHER_SPACE_TO_SPACE)
    while b"  " in data:  # runs of spaces → one (halves each run per pass)
        data = data.replace(b"  ", b" ")
    if b"\n " in data:
        data = data.replace(b"\n ", b"\n")
    if b" \n" in data:
        data = data.replace(b" \n", b"\n")
    data = data.removeprefix(b" ").removesuffix(b" ")
    return data.translate(_SPACE_TO_SEPARATOR)


def _parquet_row(name: str, before: int, row: int) -> str:
    return f"{name}: row {before + row + 1}"


def parquet_batches(path: Path, profile: CompiledProfile) -> Iterator[tuple[pa.Table, int, Locate]]:
    """Row groups of a Parquet file, as tables of the columns the profile reads, the bytes
    read so far (estimated) and where each row is (``x.parquet: row 12``)."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise Invalid(f"{path.name}: not a Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    reader = profile.row_reader(names)  # raises ProfileError naming a missing column
    wanted = sorted(
        {reader.asset, reader.time}
        | ({reader.metric_col, reader.value_col} if reader.long else {i for i, _ in reader.wide})
    )
    size = path.stat().st_size
    total = max(1, parquet.metadata.num_rows)
    seen = 0
    for batch in parquet.iter_batches(
        batch_size=PARQUET_BATCH_ROWS, columns=[names[i] for i in wanted]
    ):
        before = seen
        seen += batch.num_rows
        yield (
            pa.Table.from_batches([batch]),
            int(size * seen / total),
            partial(_parquet_row, path.name, before),
        )


def floats(column: pa.ChunkedArray) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Values as float64 and a mask of cells that were empty (not an error: no reading)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        empty = np.asarray(pc.equal(pc.utf8_trim_whitespace(column), "").to_numpy(False))
        try:
            values = pc.cast(column, pa.float64())
        except pa.ArrowInvalid:  # some cell is not a number: this batch goes cell by cell
            return floats_slowly(column.to_pylist()), empty
    else:
        try:
            values = pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return floats_slowly(column.to_pylist()), np.zeros(len(column), dtype=bool)
        empty = np.asarray(column.is_null().to_numpy(False))
    out = np.asarray(values.to_numpy(False), dtype=np.float64)
    return out, empty


def floats_slowly(cells: Sequence[Any]) -> NDArray[np.float64]:
    """Cells read one by one as messages' values are (``ingest.times.as_number``: ASCII
    digits only, no ``1_000``); NaN where a cell is no number, reported by the caller."""
    out = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        if isinstance(cell, str):
            number = as_number(cell)
        else:  # a typed Parquet cell that numpy would not cast (a decimal): its own value
            try:
                number = float(cell) if cell is not None else None
            except (TypeError, ValueError):
                number = None
        out[i] = math.nan if number is None else number
    return out
