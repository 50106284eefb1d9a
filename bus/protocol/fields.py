"""Field checkers compiled from type hints.

How it works: an event class annotates each field with a plain type (`str`,
`int`, `float`, `bool`, `int | None`, `list[str]`, `dict[str, Any]`), a
`Literal[...]` for enumerations, or an `Annotated[...]` alias from this module
(`Text`, `Label`, `Number`, `Blob`, ...). `compile_checker` turns one hint into
a function `check(value) -> value` that returns the (possibly normalised) value
or raises `LocalProtocolError` naming the kind, the field and what was wrong.
`wire_type` turns the same hint into the words docs/PROTOCOL.md uses.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Union

from .errors import LocalProtocolError
from .limits import ENGINE_NAME, INT_END, INT_MIN, MAX_DEPTH, MAX_ITEMS, MAX_NAME, MAX_TEXT, MIME


@dataclass(frozen=True)
class MaxLen:
    limit: int


@dataclass(frozen=True)
class NonEmpty:
    pass


@dataclass(frozen=True)
class Matches:
    """The whole string matches `pattern` (the empty string is allowed)."""

    pattern: re.Pattern[str]
    meaning: str


@dataclass(frozen=True)
class BlobMark:
    """Marks a field carried as its own raw frame, not in the header."""


@dataclass(frozen=True)
class NumberMark:
    pass


@dataclass(frozen=True)
class DataMark:
    """A free-form map: string keys, msgpack-native values."""


@dataclass(frozen=True)
class CountsMark:
    """A map of names (kinds) to counts: at most MAX_COUNTS entries, each a label and an int >= 0."""


MAX_COUNTS = 64


Text = Annotated[str, MaxLen(MAX_TEXT)]
Label = Annotated[str, MaxLen(MAX_NAME)]
RequiredLabel = Annotated[str, MaxLen(MAX_NAME), NonEmpty()]
Number = Annotated[float, NumberMark()]
Blob = Annotated[bytes, BlobMark()]
Data = Annotated[dict, DataMark()]
Counts = Annotated[dict, CountsMark()]
JobId = Annotated[str, MaxLen(MAX_NAME), NonEmpty()]
EngineName = Annotated[str, MaxLen(MAX_NAME), Matches(ENGINE_NAME, "letters, digits, '_', '.', '-'")]
Mime = Annotated[str, MaxLen(MAX_NAME), NonEmpty(), Matches(MIME, "type/subtype")]

Checker = Callable[[Any], Any]


def _fail(where: str, expected: str, value: Any) -> LocalProtocolError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return LocalProtocolError(
        f"{where} must be {expected}, got {type(value).__name__} {shown}",
        reason="bad-field",
    )


def is_blob(hint: Any) -> bool:
    return typing.get_origin(hint) is Annotated and any(
        isinstance(m, BlobMark) for m in hint.__metadata__
    )


def compile_checker(hint: Any, where: str) -> Checker:
    """Build the checker for one field; `where` reads like "progress.pct"."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _annotated(hint, where)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = compile_checker(args[0], where)
        return lambda v: None if v is None else inner(v)
    if origin is Literal:
        allowed = typing.get_args(hint)

        def check_literal(v: Any) -> Any:
            if v not in allowed or not isinstance(v, str):
                raise _fail(where, "one of " + ", ".join(map(repr, allowed)), v)
            return v

        return check_literal
    if origin is list:
        (item,) = typing.get_args(hint)
        inner = compile_checker(item, where + "[]")

        def check_list(v: Any) -> Any:
            if not isinstance(v, (list, tuple)) or len(v) > MAX_ITEMS:
                raise _fail(where, f"a list of at most {MAX_ITEMS} items", v)
            return [inner(x) for x in v]

        return check_list
    return _plain(hint, where)


def _plain(hint: Any, where: str) -> Checker:
    if hint is bool:

        def check_bool(v: Any) -> Any:
            if not isinstance(v, bool):
                raise _fail(where, "a boolean", v)
            return v

        return check_bool
    if hint is int:

        def check_int(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 2**63:
                raise _fail(where, "a non-negative integer below 2**63", v)
            return v

        return check_int
    if hint is float:

        def check_float(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise _fail(where, "a finite number", v)
            if isinstance(v, int) and not INT_MIN <= v < INT_END:
                raise _fail(where, "an integer that fits 64 bits", v)
            return float(v)

        return check_float
    if hint is str:
        return _annotated(Annotated[str, MaxLen(MAX_TEXT)], where)
    raise TypeError(f"{where}: no checker for type hint {hint!r}")


def _annotated(hint: Any, where: str) -> Checker:
    base = typing.get_args(hint)[0]
    marks = hint.__metadata__
    if any(isinstance(m, BlobMark) for m in marks):
        return _check_blob(where)
    if any(isinstance(m, DataMark) for m in marks):
        return lambda v: check_data(v, where)
    if any(isinstance(m, CountsMark) for m in marks):
        return lambda v: check_counts(v, where)
    if any(isinstance(m, NumberMark) for m in marks):

        def check_number(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise _fail(where, "a finite number", v)
            if isinstance(v, int) and not INT_MIN <= v < INT_END:
                raise _fail(where, "an integer that fits 64 bits", v)
            return v

        return check_number
    assert base is str, hint
    limit = next((m.limit for m in marks if isinstance(m, MaxLen)), MAX_TEXT)
    non_empty = any(isinstance(m, NonEmpty) for m in marks)
    pattern = next((m for m in marks if isinstance(m, Matches)), None)
    expected = f"a{' non-empty' if non_empty else ''} string of at most {limit} characters"
    if pattern is not None:
        expected += f" ({pattern.meaning})"

    def check_str(v: Any) -> Any:
        if not isinstance(v, str) or len(v) > limit or (non_empty and not v):
            raise _fail(where, expected, v)
        if pattern is not None and v and not pattern.pattern.fullmatch(v):
            raise _fail(where, expected, v)
        return v

    return check_str


def _check_blob(where: str) -> Checker:
    def check_blob(v: Any) -> Any:
        if isinstance(v, bytes):
            return v
        if isinstance(v, bytearray):
            return bytes(v)
        if isinstance(v, memoryview) and v.contiguous:
            return v if v.format == "B" and v.ndim == 1 else v.cast("B")
        raise _fail(where, "bytes", v)

    return check_blob


def check_counts(value: Any, where: str) -> dict:
    """A map of labels to non-negative integers (e.g. events dropped, by kind)."""
    expected = f"a map of at most {MAX_COUNTS} names (at most {MAX_NAME} characters) to integers >= 0"
    if not isinstance(value, dict) or len(value) > MAX_COUNTS:
        raise _fail(where, expected, value)
    for key, count in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_NAME or isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < 2**63:
            raise _fail(where, expected, value)
    return value


def check_data(value: Any, where: str, depth: int = 0) -> dict:
    """A free-form map: str keys; values None, bool, int, float, str, bytes, list, map."""
    if not isinstance(value, dict):
        raise _fail(where, "a map with string keys", value)
    _check_tree(value, where, depth)
    return value


def _check_tree(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise LocalProtocolError(f"{where} nests deeper than {MAX_DEPTH} levels", reason="bad-field")
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise _fail(where, f"a map of at most {MAX_ITEMS} entries", value)
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(where + " key", "a string", key)
            _check_tree(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise _fail(where, f"a list of at most {MAX_ITEMS} items", value)
        for item in value:
            _check_tree(item, where + "[]", depth + 1)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(where, "a finite number", value)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not INT_MIN <= value < INT_END:
            raise _fail(where, "an integer that fits 64 bits", value)
    elif value is not None and not isinstance(value, (bool, str, bytes)):
        raise _fail(where, "nil, boolean, number, string, bytes, list or map", value)


def wire_type(hint: Any) -> str:
    """The type of a field in the words of docs/PROTOCOL.md."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return wire_type(args[0]) + " or nil"
    if origin is Literal:
        return "str: " + " \\| ".join(f'"{a}"' for a in typing.get_args(hint))
    if origin is list:
        return "array of " + wire_type(typing.get_args(hint)[0])
    if origin is Annotated:
        marks = hint.__metadata__
        if any(isinstance(m, BlobMark) for m in marks):
            return "raw frame"
        if any(isinstance(m, DataMark) for m in marks):
            return "map"
        if any(isinstance(m, CountsMark) for m in marks):
            return f"map of str to int (>= 0), at most {MAX_COUNTS} entries"
        if any(isinstance(m, NumberMark) for m in marks):
            return "int or float"
        limit = next(m.limit for m in marks if isinstance(m, MaxLen))
        notes = [f"<= {limit} chars"]
        notes += ["non-empty" for m in marks if isinstance(m, NonEmpty)]
        notes += [m.meaning for m in marks if isinstance(m, Matches)]
        return f"str ({', '.join(notes)})"
    return {bool: "bool", int: "int (>= 0)", float: "float", str: f"str (<= {MAX_TEXT} chars)"}[hint]
