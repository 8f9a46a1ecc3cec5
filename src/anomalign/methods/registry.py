"""Method registry: adding a method is adding a module that registers a factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anomalign.errors import ConfigError

_FACTORIES: dict[str, Callable[..., Any]] = {}


def register_method(name: str, **fixed: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``factory`` under ``name``; ``fixed`` keyword arguments are always passed."""

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        key = name.lower()
        if key in _FACTORIES:
            raise ValueError(f"method '{name}' is already registered")
        _FACTORIES[key] = (lambda **kwargs: factory(**fixed, **kwargs)) if fixed else factory
        return factory

    return decorator


def list_methods() -> list[str]:
    """Registered method names."""
    _import_builtin_methods()
    return sorted(_FACTORIES)


def create_method(name: str, **kwargs: Any) -> Any:
    """Build a registered method by name (e.g. ``"anoclip"``, ``"anoclip+"``)."""
    _import_builtin_methods()
    key = name.lower()
    if key not in _FACTORIES:
        raise ConfigError(f"Unknown method '{name}'; known methods: {', '.join(list_methods())}.")
    return _FACTORIES[key](**kwargs)


def _import_builtin_methods() -> None:
    import anomalign.methods.anoclip  # noqa: F401  (registers "anoclip", "anoclip+")
    from anomalign.methods import finegrainedad  # noqa: F401  (registers "finegrainedad")
