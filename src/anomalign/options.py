"""Option values from the command line, parsed against each option's declared type.

``--option KEY=VALUE`` strings are split by :func:`parse_key_value`; the value text is
then parsed by :func:`coerce_value` against the type the method declares for ``KEY``
(its config dataclass field or constructor annotation): ``memory_blocks=3,8`` and
``memory_blocks=[3,8]`` both give ``(3, 8)``; ``seg_epochs=abc`` or ``lr=nan`` give one
line naming the option, the expected type and the value.
"""

from __future__ import annotations

import json
import math
import types
from typing import Any, Literal, Union, get_args, get_origin

from anomalign.errors import ConfigError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


def parse_key_value(text: str, flag: str, form: str = "KEY=VALUE") -> tuple[str, str]:
    """``"smoothing=gaussian"`` -> ``("smoothing", "gaussian")`` (the value stays text).

    A malformed string raises :class:`ConfigError` naming ``flag``.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} must look like {form}, got '{text}'.")
    return key.strip(), raw.strip()


def guess_value(text: str) -> Any:
    """A value without a declared type: JSON when it parses (numbers, booleans, lists),
    else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def describe_type(hint: Any) -> str:
    """A type in words, for error messages ("an integer", "one of ('a', 'b')", ...)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return f"one of {args}"
    if origin in (Union, types.UnionType):
        parts = [describe_type(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or none" if type(None) in args else text
    if origin in (tuple, list):
        item = args[0] if args else Any
        if origin is tuple and args and args[-1] is not Ellipsis:
            return (
                f"{len(args)} comma-separated values ({', '.join(describe_type(a) for a in args)})"
            )
        return f"comma-separated {describe_type(item).removeprefix('an ').removeprefix('a ')}s"
    return {
        bool: "a boolean (true/false)",
        int: "an integer",
        float: "a finite number",
        str: "a text value",
    }.get(hint, getattr(hint, "__name__", str(hint)))


class _Mismatch(Exception):
    pass


def _items(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    text = str(value).strip()
    if text.startswith(("[", "(")) and text.endswith(("]", ")")):
        text = text[1:-1]
    return [part.strip() for part in text.split(",") if part.strip()]


def _coerce(value: Any, hint: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    text = value.strip() if isinstance(value, str) else None
    if hint is Any or hint is object:
        return guess_value(text) if text is not None else value
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or (text is not None and text.lower() in _NONE)):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        for choice in args:
            if value == choice or (text is not None and text == str(choice)):
                return choice
        raise _Mismatch
    if origin in (tuple, list):
        items = _items(value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise _Mismatch
            return tuple(_coerce(v, a) for v, a in zip(items, args, strict=True))
        item_type = args[0] if args else Any
        coerced = [_coerce(v, item_type) for v in items]
        return tuple(coerced) if origin is tuple else coerced
    if hint is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise _Mismatch
    if hint is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            return value
        if text is not None:
            try:
                return int(text)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if hint is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int | float):
            number = float(value)
        elif text is not None:
            try:
                number = float(text)
            except ValueError:
                raise _Mismatch from None
        else:
            raise _Mismatch
        if not math.isfinite(number):
            raise _Mismatch
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _Mismatch


def coerce_value(value: Any, hint: Any, label: str) -> Any:
    """``value`` (text from a command line, or already typed) as the type ``hint``.

    Raises a one-line :class:`ConfigError`: ``"<label>: expected <type>, got <value>."``
    """
    try:
        return _coerce(value, hint)
    except _Mismatch:
        raise ConfigError(f"{label}: expected {describe_type(hint)}, got {value!r}.") from None
