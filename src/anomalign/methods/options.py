"""What every method config shares: presets plus named overrides, and choice checks.

A method's config is a frozen dataclass whose fields are its options; fields typed as
``Literal[...]`` list their allowed values, so the choices live in one place (the type).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from numbers import Integral, Real
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from anomalign.errors import ConfigError

C = TypeVar("C")


def config_from_preset(
    cls: type[C],
    label: str,
    presets: Mapping[str, Mapping[str, Any]],
    preset: str,
    overrides: Mapping[str, Any],
) -> C:
    """``cls(preset=preset, **presets[preset])`` with ``overrides`` applied; unknown
    presets or option names raise :class:`ConfigError` naming them and the known ones."""
    if preset not in presets:
        raise ConfigError(f"{label} preset must be one of {sorted(presets)}, got '{preset}'.")
    known = {f.name for f in fields(cls)} - {"preset"}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"Unknown {label} option(s) {unknown}; known options: {sorted(known)}.")
    return replace(cls(preset=preset, **presets[preset]), **overrides)  # type: ignore[call-arg]


def check_choices(config: object, label: str) -> None:
    """Raise :class:`ConfigError` for a ``Literal``-typed option holding another value."""
    for name, hint in get_type_hints(type(config)).items():
        if get_origin(hint) is Literal and getattr(config, name) not in get_args(hint):
            raise ConfigError(
                f"{label} option {name}={getattr(config, name)!r}: expected one of "
                f"{get_args(hint)}."
            )


@dataclass(frozen=True)
class Bound:
    """The allowed range of a numeric option: ``low <= value <= high`` (``low < value``
    when ``open_low``)."""

    low: float
    high: float
    open_low: bool = False

    def holds(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        return above and value <= self.high

    def text(self) -> str:
        return f"{'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint`` (None when it does)."""
    args = get_args(hint)
    if isinstance(hint, UnionType) or get_origin(hint) is Union:
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(value, arg) for arg in args if arg is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if hint is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, Integral):
            return "expected a whole number"
        return None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, Real):
            return "expected a number"
        return None if math.isfinite(float(value)) else "expected a finite number"
    if get_origin(hint) is tuple and args and args[-1] is Ellipsis:
        if not isinstance(value, tuple):
            return "expected a list"
        return next((p for v in value if (p := _type_problem(v, args[0]))), None)
    return None


def check_numbers(config: object, label: str, bounds: Mapping[str, Bound]) -> None:
    """Raise :class:`ConfigError` for an option whose value has the wrong type for its
    annotation (a float for an int, nan, a string, ...) or lies outside ``bounds``."""
    for name, hint in get_type_hints(type(config)).items():
        if get_origin(hint) is Literal:
            continue
        value = getattr(config, name)
        problem = _type_problem(value, hint)
        if problem is not None:
            raise ConfigError(f"{label} option {name}={value!r}: {problem}.")
        bound = bounds.get(name)
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if bound is not None and item is not None and not bound.holds(float(item)):
                raise ConfigError(
                    f"{label} option {name}={value!r} is out of range; expected a value in "
                    f"{bound.text()}."
                )
