"""The method registry: one place holds every fact about a method.

A method is a :class:`~anomalign.methods.base.Detector` subclass decorated with
:func:`register_method`, which records a :class:`MethodSpec`: its name, learning type,
fixed options (``anoclip+`` is AnoCLIP with ``tta=True``), evaluation protocol (map size,
AUPRO variant), per-dataset default options, whether it needs a text tower, and (through
the class) its options dataclass and bundle loader. The benchmark, the CLI, bundles and
the service read these specs; nothing else lists methods.

Adding a method is adding one package that registers itself plus one line in
:data:`BUILTIN_METHOD_MODULES`; a method defined elsewhere registers at run time (call
:func:`register_method`) or through an ``anomalign.methods`` entry point.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_type_hints

from anomalign.bundles import load_bundle
from anomalign.errors import ConfigError
from anomalign.options import coerce_value

if TYPE_CHECKING:
    from anomalign.methods.base import Detector

Learning = Literal["zero-shot", "few-shot", "zero-or-few-shot"]
LEARNING_TYPES: tuple[str, ...] = ("zero-shot", "few-shot", "zero-or-few-shot")
#: Modules of the methods that ship with anomalign (importing one registers it).
BUILTIN_METHOD_MODULES: tuple[str, ...] = (
    "anomalign.methods.anoclip",
    "anomalign.methods.finegrainedad",
    "anomalign.methods.patchcore",
    "anomalign.methods.hybrid",
    "anomalign.methods.winclip",
)
ENTRY_POINT_GROUP = "anomalign.methods"
#: Constructor arguments that are not method options.
NON_OPTIONS = frozenset({"backbone", "device", "self", "options", "return"})


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class MethodSpec:
    """Every fact about one registered method.

    Attributes:
        name: registered name (lower case), the one bundles and ``--method`` use.
        cls: the :class:`Detector` subclass; ``cls.from_bundle`` loads its bundles.
        learning: "zero-shot" (never uses normal images), "few-shot" (needs at least one)
            or "zero-or-few-shot" (runs with or without them).
        fixed: constructor options this name always passes (not settable by the user).
        eval_size: map size of the method's paper protocol (benchmark default).
        aupro: the AUPRO variant of that protocol.
        dataset_defaults: ``{layout: {option: value}}`` implied by a dataset (user options win).
        needs_text: whether the method needs the backbone's text tower.
        summary: one line for ``anomalign info`` and the docs.
    """

    name: str
    cls: type
    learning: Learning
    fixed: Mapping[str, Any] = field(default_factory=dict)
    eval_size: int = 240
    aupro: str = "mvtec"
    dataset_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    needs_text: bool = True
    summary: str = ""

    @property
    def uses_shots(self) -> bool:
        """``fit`` learns from normal images, so the benchmark runs it per (shots, seed)."""
        return self.learning != "zero-shot"

    @property
    def zero_shot(self) -> bool:
        """The method runs without normal reference images."""
        return self.learning != "few-shot"

    @property
    def config(self) -> type | None:
        """The options dataclass (fields = options, ``Literal`` types = choices)."""
        return getattr(self.cls, "config_class", None)

    def option_types(self) -> dict[str, Any]:
        """Option name -> declared type: config fields plus extra constructor arguments."""
        types: dict[str, Any] = {}
        config = self.config
        if config is not None and is_dataclass(config):
            hints = get_type_hints(config)
            types.update({f.name: hints[f.name] for f in fields(config)})
        init_hints = get_type_hints(self.cls.__init__)
        types.update({k: v for k, v in init_hints.items() if k not in NON_OPTIONS})
        for name in self.fixed:
            types.pop(name, None)
        return types

    def coerce_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Options with text values (from a command line) parsed against their declared
        types; unknown or fixed names and bad values raise a one-line :class:`ConfigError`."""
        types = self.option_types()
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name in self.fixed:
                raise ConfigError(
                    f"{self.name} option '{name}' is fixed to {self.fixed[name]!r} by the method."
                )
            if name not in types:
                raise ConfigError(
                    f"Unknown {self.name} option '{name}'; known options: "
                    f"{', '.join(sorted(types))}."
                )
            out[name] = coerce_value(value, types[name], f"{self.name} option '{name}'")
        return out

    def create(self, **kwargs: Any) -> Detector:
        """Build the detector with the fixed options applied (``backbone=None``: the
        method's own default backbone)."""
        if kwargs.get("backbone", "") is None:
            kwargs.pop("backbone")
        clash = sorted(set(kwargs) & set(self.fixed))
        if clash:
            raise ConfigError(
                f"{self.name} option(s) {clash} are fixed by the method "
                f"({dict(self.fixed)}); use another method name instead."
            )
        return self.cls(**self.fixed, **kwargs)


_SPECS: dict[str, MethodSpec] = {}
_LOADED = False


def register_method(
    name: str,
    *,
    learning: Learning,
    fixed: Mapping[str, Any] | None = None,
    eval_size: int = 240,
    aupro: str = "mvtec",
    dataset_defaults: Mapping[str, Mapping[str, Any]] | None = None,
    needs_text: bool = True,
    summary: str = "",
    replace: bool = False,
) -> Callable[[type], type]:
    """Class decorator registering a :class:`Detector` subclass under ``name``.

    Stack it to register one class under several names (with different ``fixed``).
    ``replace=True`` lets a test or plugin re-register a name.
    """
    if learning not in LEARNING_TYPES:
        raise ConfigError(f"learning must be one of {LEARNING_TYPES}, got {learning!r}.")

    def decorator(cls: type) -> type:
        from anomalign.methods.base import Detector

        if not (isinstance(cls, type) and issubclass(cls, Detector)):
            raise TypeError(f"{cls!r} is not a Detector subclass")
        key = name.lower()
        if key in _SPECS and not replace and _SPECS[key].cls is not cls:
            raise ValueError(f"method '{name}' is already registered")
        _SPECS[key] = MethodSpec(
            name=key,
            cls=cls,
            learning=learning,
            fixed=_frozen(fixed),
            eval_size=eval_size,
            aupro=aupro,
            dataset_defaults=MappingProxyType(
                {k: _frozen(v) for k, v in (dataset_defaults or {}).items()}
            ),
            needs_text=needs_text,
            summary=summary,
        )
        return cls

    return decorator


def unregister_method(name: str) -> None:
    """Remove a registered method (for tests and plugins)."""
    _SPECS.pop(name.lower(), None)


def _load_methods() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in BUILTIN_METHOD_MODULES:
        importlib.import_module(module)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # a broken plugin must not break the built-in methods
            import warnings

            warnings.warn(
                f"anomalign method plugin '{entry.name}' failed to load: {error}", stacklevel=2
            )


def list_methods() -> list[MethodSpec]:
    """Every registered method, by name (each spec says its learning type)."""
    _load_methods()
    return [_SPECS[k] for k in sorted(_SPECS)]


def method_names() -> list[str]:
    """Registered method names."""
    return [spec.name for spec in list_methods()]


def method_spec(name: str) -> MethodSpec:
    """The spec of a registered method; a :class:`ConfigError` lists the known ones."""
    _load_methods()
    spec = _SPECS.get(str(name).lower())
    if spec is None:
        raise ConfigError(f"Unknown method '{name}'; known methods: {', '.join(method_names())}.")
    return spec


def create_detector(name: str, *, backbone: Any = None, **options: Any) -> Detector:
    """Build a registered method by name, e.g. ``create_detector("anoclip+",
    backbone="anomalign-tiny:random")``; ``options`` are the method's (preset, device, ...).
    Without ``backbone`` each method uses its own default (CLIP methods:
    :data:`DEFAULT_BACKBONE`)."""
    return method_spec(name).create(backbone=backbone, **options)


#: File suffix -> ``"module:function"`` that opens detector files that are not bundles,
#: called as ``function(path, device=, backbone=)``; imported by name when used, so a higher
#: layer can plug in (the exported-model runtime stays torch-free).
FILE_LOADERS: dict[str, str] = {
    ".onnx": "anomalign.export.runtime:open_exported",
    ".xml": "anomalign.export.runtime:open_exported",  # OpenVINO IR from `anomalign export`
}


def load_detector(path: str | Path, *, device: str = "cpu", backbone: Any = None) -> Detector:
    """Load a detector bundle written by :meth:`Detector.save` / ``anomalign fit``, or an
    exported model (``.onnx``, see :data:`FILE_LOADERS`).

    Args:
        path: the ``.anomalign`` file (or ``.onnx`` model).
        device: where to run the backbone.
        backbone: an already loaded backbone (or spec string) to use instead of loading
            the bundle's; it must be the same backbone.
    """
    target = FILE_LOADERS.get(Path(path).suffix.lower())
    if target is not None:
        module, _, name = target.partition(":")
        loader = getattr(importlib.import_module(module), name)
        return loader(path, device=device, backbone=backbone)
    bundle = load_bundle(path)
    try:
        spec = method_spec(bundle.method)
    except ConfigError:
        raise ConfigError(
            f"'{path}' holds a detector of method '{bundle.method}', which this installation "
            f"does not have; known methods: {', '.join(method_names())}."
        ) from None
    detector = spec.cls.from_bundle(bundle, backbone=backbone, device=device)
    detector.path = Path(path)
    return detector
