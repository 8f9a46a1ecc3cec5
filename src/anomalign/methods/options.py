"""What every method config shares: presets plus named overrides, and choice checks.

A method's config is a frozen dataclass whose fields are its options; fields typed as
``Literal[...]`` list their allowed values, so the choices live in one place (the type).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

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
