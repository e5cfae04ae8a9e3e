"""Reading history files for ``ingest.history``: CSV and whitespace-separated text in blocks
of string columns, Parquet in row groups (pyarrow); memory bounded by the block, not the file."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from fleetcare.errors import Invalid
from ingest.profiles import CompiledProfile

BLOCK_BYTES = 4 * 1024 * 1024  # text read per batch
PARQUET_BATCH_ROWS = 131_072
PARQUET_SUFFIXES = (".parquet", ".pq")


def text_batches(
    path: Path, profile: CompiledProfile, bad_row_seen: Callable[[str], None]
) -> Iterator[tuple[pa.Table, int]]:
    """Blocks of ``path`` as tables (every column a string) and the bytes read so far; a row
    of the wrong number of columns is skipped and told to ``bad_row_seen``."""
    doc = profile.doc
    whitespace = profile.format == "text"
    names: list[str] | None = None if doc.header else list(doc.columns or [])
    done = 0

    def bad_row(row: Any) -> str:
        bad_row_seen(
            f"{path.name}: {row.actual_columns} columns, expected {row.expected_columns}: "
            f"{(row.text or '')[:120]!r}"
        )
        return "skip"

    with path.open("rb") as f:
        rest = b""
        while True:
            chunk = f.read(BLOCK_BYTES)
            done += len(chunk)
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
                data = whitespace_to_csv(data)
            if names is None:  # the header line names the columns
                first, _, data = data.partition(b"\n")
                text = first.decode("utf-8", errors="replace").strip()
                names = next(profile.split_lines([text]), [])
                profile.row_reader(names)  # every field named by the profile is a column
            if data.strip():
                try:
                    table = pcsv.read_csv(
                        io.BytesIO(data),
                        read_options=pcsv.ReadOptions(column_names=names, use_threads=False),
                        parse_options=pcsv.ParseOptions(
                            delimiter="," if whitespace else doc.delimiter,
                            invalid_row_handler=bad_row,
                            ignore_empty_lines=True,
                        ),
                        convert_options=pcsv.ConvertOptions(
                            column_types=dict.fromkeys(names, pa.string()),
                            strings_can_be_null=False,
                        ),
                    )
                except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                    raise Invalid(f"{path}: cannot read as {profile.format}: {exc}") from None
                yield table, done
            if not chunk:
                return


# whitespace (as ``bytes.split`` sees it) within a line → space; space → comma
_OTHER_SPACE_TO_SPACE = bytes.maketrans(b"\t\x0b\x0c", b"   ")
_SPACE_TO_COMMA = bytes.maketrans(b" ", b",")


def whitespace_to_csv(data: bytes) -> bytes:
    """Lines of whitespace-separated fields as comma-separated ones: what
    ``b"\\n".join(b",".join(line.split()) for line in data.splitlines())`` gives, in a few
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
    return data.translate(_SPACE_TO_COMMA)


def parquet_batches(path: Path, profile: CompiledProfile) -> Iterator[tuple[pa.Table, int]]:
    """Row groups of a Parquet file, as tables of the columns the profile reads."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise Invalid(f"{path}: not a Parquet file ({exc})") from None
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
        seen += batch.num_rows
        yield pa.Table.from_batches([batch]), int(size * seen / total)
