"""The input rules every request record follows (the second wall of the API's input layer).

Every request body is a :class:`RequestRecord`: unknown fields are refused, every string has a
maximum length and no NUL character (PostgreSQL refuses it in text), numbers are strict (``false``
and ``"5"`` are not numbers), floats are finite, integers fit their column (:data:`Id`,
:data:`Int32`, :data:`Count`, :data:`Money`), times carry a zone and lie in a sane range
(:data:`Moment`). A :class:`PatchRecord` also refuses ``null`` for a field whose column cannot be
empty. The same rules serve definition files and imports that build these records.
"""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
INT8_MIN = -(2**63)
MAX_TEXT = 10_000  # the longest string any request field may hold unless it says less
MONEY_MAX = 10**12  # minor units: ten billion in a two-decimal currency; products stay in int8

Id = Annotated[int, Field(ge=1, le=INT8_MAX)]
"""An identity (``bigint``) in a path, query or body."""
Int32 = Annotated[int, Field(ge=-(2**31), le=INT4_MAX)]
Count = Annotated[int, Field(ge=0, le=INT4_MAX)]
"""A non-negative ``integer`` column (quantities, stock levels)."""
Positive = Annotated[int, Field(ge=1, le=INT4_MAX)]
Money = Annotated[int, Field(ge=0, le=MONEY_MAX)]
"""An amount in minor units (``bigint`` column, bounded so that sums and products fit)."""

ShortText = Annotated[str, Field(max_length=200)]
"""A short text in a query or path (a reference, a component name)."""

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def storable_text(value: str) -> bool:
    """Whether PostgreSQL can hold ``value`` as text: no NUL character and valid Unicode (a
    lone surrogate, which a JSON ``\\ud800`` escape decodes into, has no UTF-8 form)."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unstorable_text_in(document: Any, at: str = "") -> tuple[str, str] | None:
    """(field, why) of the first string of a parsed document (a definition file) that
    PostgreSQL cannot hold as text — a NUL character, a lone surrogate — or None."""
    if isinstance(document, str):
        if storable_text(document):
            return None
        what = "the NUL character" if "\x00" in document else "a lone surrogate (not Unicode)"
        return at or "(document)", f"text may not contain {what}"
    items: Any = ()
    if isinstance(document, dict):
        items = [(f"{at}.{k}" if at else str(k), k, v) for k, v in document.items()]
    elif isinstance(document, list):
        items = [(f"{at}[{i}]", None, v) for i, v in enumerate(document)]
    for where, key, value in items:
        why = unstorable_text_in(key, f"{where} (its name)") if isinstance(key, str) else None
        why = why or unstorable_text_in(value, where)
        if why:
            return why
    return None


def _sane_time(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a time zone (e.g. 2026-11-26T10:00:00Z)")
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must lie between {EARLIEST.year} and {LATEST.year}")
    return value


Moment = Annotated[datetime, AfterValidator(_sane_time)]
"""A point in time with a zone, between 1970 and 2200."""


def _leaf_types(annotation: Any) -> set[Any]:
    """The plain types an annotation allows (Optional, Annotated, unions and lists unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: set[Any] = set()
        for arg in typing.get_args(annotation):
            out |= _leaf_types(arg)
        return out
    if origin in (list, set, frozenset, tuple):
        args = typing.get_args(annotation)
        return _leaf_types(args[0]) if args else {Any}
    if origin is typing.Literal:
        return {type(v) for v in typing.get_args(annotation)}
    return {origin or annotation}


def _wrong_scalar(leaves: set[Any], value: Any) -> str | None:
    """Why ``value`` is not of a strict numeric or boolean field's type, or None."""
    numeric = leaves & {int, float}
    if numeric and not leaves & {str, bool, Any} and isinstance(value, (bool, str)):
        return "a number is expected" if float in numeric else "an integer is expected"
    boolean = leaves in ({bool, type(None)}, {bool})
    if boolean and not isinstance(value, bool) and value is not None:
        return "true or false is expected"
    return None


def _free_form_problem(value: Any, depth: int = 0) -> str | None:
    """Why a free-form value (attributes, JSON documents) cannot be stored, or None."""
    if depth > 32:
        return "is nested too deeply (more than 32 levels)"
    if isinstance(value, str):
        if "\x00" in value:
            return "text may not contain the NUL character"
        if not storable_text(value):
            return "text may not contain a lone surrogate (\\ud800-\\udfff): it is not Unicode"
        if len(value) > MAX_TEXT:
            return f"text is longer than {MAX_TEXT} characters"
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        if not INT8_MIN <= value <= INT8_MAX:
            return "an integer is out of the 64-bit range"
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "a number is not finite"
    elif isinstance(value, dict):
        for key, item in value.items():
            why = _free_form_problem(key, depth + 1) or _free_form_problem(item, depth + 1)
            if why:
                return why
    elif isinstance(value, list):
        for item in value:
            why = _free_form_problem(item, depth + 1)
            if why:
                return why
    return None


class RequestRecord(BaseModel):
    """A request body: unknown fields refused, bounded strict scalars, no NUL anywhere."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        str_max_length=MAX_TEXT,
        allow_inf_nan=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _strict_scalars(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        problems: list[str] = []
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None:
                continue  # extra="forbid" names it
            leaves = _leaf_types(field.annotation)
            values = value if isinstance(value, list) else [value]
            for item in values:
                why = _wrong_scalar(leaves, item)
                if why:
                    problems.append(f"{name}: {why}, not {item!r}")
                    break
            if leaves & {Any, dict}:
                why = _free_form_problem(value)
                if why:
                    problems.append(f"{name}: {why}")
        if problems:
            raise ValueError("; ".join(problems))
        return data


class PatchRecord(RequestRecord):
    """A partial update: an omitted field stays as it is; ``null`` only where ``nullable`` says.

    ``null`` for a field whose column cannot be empty is refused (422), not passed on to the
    database.
    """

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> PatchRecord:
        refused = sorted(
            name
            for name in self.model_fields_set
            if getattr(self, name) is None and name not in self.nullable
        )
        if refused:
            raise ValueError(f"{', '.join(refused)}: cannot be null (omit a field to keep it)")
        return self
