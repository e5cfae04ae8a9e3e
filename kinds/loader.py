"""Read kind definition files (YAML or JSON) into validated definitions.

Every error names the file, the field and what is wrong; nothing is applied from a file that
has one.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml

from fleetcare.errors import Invalid
from fleetcare.inputs import unstorable_text_in
from fleetcare.yamltext import load_yaml
from kinds.schemas import KindDefinition

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
MAX_FILE_BYTES = 1_000_000


class KindFileError(Invalid):
    """A kind definition that cannot be read or does not validate."""

    code = "invalid_kind"


def field_path(loc: Iterable[int | str]) -> str:
    """``('metrics', 2, 'low')`` → ``metrics[2].low``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_errors(exc: pydantic.ValidationError) -> list[str]:
    """One ``field: what is wrong`` line per validation error."""
    lines = []
    for err in exc.errors(include_url=False):
        # the union of the text and mapping forms of a threshold adds its own step to loc
        loc = [p for p in err["loc"] if p not in ("function-before[_from_text(), Threshold]",)]
        where = field_path(loc)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{where}: {message}" if where else message)
    return lines


def parse_definition(data: Any, source: str) -> KindDefinition:
    """Validate a parsed document; KindFileError naming ``source``, the field and the fault."""
    if not isinstance(data, Mapping):
        raise KindFileError(f"{source}: a kind definition is a mapping (name, metrics, ...)")
    if (unstorable := unstorable_text_in(data)) is not None:
        raise KindFileError(f"{source}: {unstorable[0]}: {unstorable[1]}")
    try:
        return KindDefinition.model_validate(data)
    except pydantic.ValidationError as exc:
        lines = describe_errors(exc)
        raise KindFileError(f"{source}: " + f"; {source}: ".join(lines)) from None


def read_document(path: Path) -> Any:
    """The YAML or JSON document in ``path`` (by its suffix); KindFileError when unreadable."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise KindFileError(f"{path}: a kind file ends in .yaml, .yml or .json")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KindFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise KindFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start : exc.start + 1].hex()
        raise KindFileError(f"{path}: line {line}: not UTF-8 text (byte 0x{byte})") from None
    try:
        if fmt == "json":
            return json.loads(text)
        return load_yaml(text)
    except json.JSONDecodeError as exc:
        raise KindFileError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise KindFileError(f"{path}: {where}invalid YAML: {problem}") from None
    except RecursionError:
        raise KindFileError(f"{path}: nested too deeply to be a kind definition") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise KindFileError(f"{path}: invalid {fmt.upper()}: {exc}"[:300]) from None


def load_file(path: Path | str) -> KindDefinition:
    """Read and validate one kind file."""
    path = Path(path)
    return parse_definition(read_document(path), str(path))


def builtin_files() -> list[Path]:
    """The kind files shipped with fleetcare (``kinds/builtin/``), in name order."""
    folder = Path(__file__).resolve().parent / "builtin"
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)


@functools.cache
def _builtin_kinds() -> tuple[KindDefinition, ...]:
    return tuple(load_file(p) for p in builtin_files())


def builtin_kinds() -> dict[str, KindDefinition]:
    """The shipped kinds by name, read from their files: for the simulators' own physics and
    the offline evaluation, which run without a database. Everything else asks the database."""
    return {k.name: k for k in _builtin_kinds()}
