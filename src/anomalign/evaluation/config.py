"""The typed configuration of a benchmark run, its validation and its JSON form.

A :class:`BenchmarkConfig` says what to run (dataset, categories, methods, shots, seeds,
backbone, method options) and how to score it (evaluation size and aspect, AUPRO variant).
Everything that changes a unit's numbers goes into that unit's hash (:meth:`unit_identity`),
so a resumed run reuses a finished unit only when it would compute the same thing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from anomalign.backbones.spec import DEFAULT_BACKBONE
from anomalign.data.fewshot import FULL_SHOT
from anomalign.errors import ConfigError
from anomalign.methods.registry import MethodSpec
from anomalign.options import parse_key_value

#: Datasets read from an installed package when no --root is given.
PACKAGED_DATASETS = ("elpv", "conformal-textile")
#: Datasets accepted besides the layouts of :mod:`anomalign.data.layouts`.
SYNTHETIC = "synthetic"
AUPRO_CHOICES = ("mvtec", "compat", "anomalib")
EVAL_ASPECTS = ("auto", "squash", "keep")
PRECISIONS = ("fp32", "fp16", "bf16")
#: Key of :attr:`BenchmarkConfig.method_options` whose options go to every method.
ALL_METHODS = "*"


@dataclass(frozen=True)
class SyntheticOptions:
    """Parameters of the generated dataset used by ``dataset="synthetic"``."""

    layout: str = "mvtec"
    categories: tuple[str, ...] = ("synth_texture", "synth_object")
    seed: int = 0
    image_size: int = 128
    n_train: int = 8
    n_test_good: int = 4
    n_test_defect: int = 6


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything a benchmark run needs; serialisable with :meth:`to_dict`.

    Attributes:
        dataset: a layout name ("mvtec", "visa", ...), "auto" (detect) or "synthetic".
        root: dataset folder (not used for "synthetic": the data is generated in the output).
        categories: categories to run (None: all).
        methods: registered method names, e.g. ("anoclip", "anoclip+", "finegrainedad").
        shots: numbers of normal reference images (0 = zero-shot).
        seeds: k-shot sampling seeds (few-shot methods run once per seed).
        backbone: backbone spec shared by every method.
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
        precision: "fp32", "fp16" or "bf16".
        eval_size: maps and masks are resized to this before metrics (None: each method's
            protocol size, e.g. 240 for AnoCLIP, 400 for FineGrainedAD).
        eval_aspect: "squash" (eval_size x eval_size), "keep" (short side = eval_size) or
            "auto" ("keep" for methods that tile the long side, else "squash").
        aupro_variant: AUPRO definition ("mvtec" exact, "compat" papers' code, "anomalib").
        method_options: ``{method or "*": {option: value}}`` passed to the method factories.
        batch_size: images per predict call.
        overlays: overlay examples per category (0: none).
        save_maps: also store every anomaly map (``maps/…npz``, float32).
        max_test: score at most this many test images per category (None: all): a seeded,
            label-stratified subset for quick runs, recorded in the report.
        synthetic: generator parameters for ``dataset="synthetic"``.
    """

    dataset: str
    root: str | None = None
    categories: tuple[str, ...] | None = None
    methods: tuple[str, ...] = ("anoclip",)
    shots: tuple[int, ...] = (0,)
    seeds: tuple[int, ...] = (0,)
    backbone: str = DEFAULT_BACKBONE
    device: str = "auto"
    precision: str = "fp32"
    eval_size: int | None = None
    eval_aspect: str = "auto"
    aupro_variant: str = "mvtec"
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 8
    overlays: int = 4
    save_maps: bool = False
    max_test: int | None = None
    synthetic: SyntheticOptions = field(default_factory=SyntheticOptions)

    # -- validation ---------------------------------------------------------------------

    def validate(self) -> BenchmarkConfig:
        """Raise :class:`ConfigError` naming the offending option; return ``self``."""
        from anomalign.data.layouts import LAYOUTS

        datasets = (SYNTHETIC, "auto", *LAYOUTS)
        if self.dataset not in datasets:
            raise ConfigError(
                f"--dataset '{self.dataset}' is not known; expected one of {', '.join(datasets)}."
            )
        if (
            self.dataset != SYNTHETIC
            and self.root is None
            and self.dataset not in PACKAGED_DATASETS
        ):
            raise ConfigError(f"--root is required for --dataset {self.dataset}.")
        if not self.methods:
            raise ConfigError("--method needs at least one method name.")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"--method lists a method twice: {', '.join(self.methods)}.")
        _check_ints(tuple(0 if k == FULL_SHOT else k for k in self.shots), "--shots", minimum=0)
        if len(set(self.shots)) != len(self.shots):
            raise ConfigError(f"--shots lists a value twice: {list(self.shots)}.")
        if self.max_test is not None:
            _check_ints((self.max_test,), "--max-test", minimum=2)
        _check_ints(self.seeds, "--seeds", minimum=0, unique=True)
        if self.eval_size is not None:
            _check_ints((self.eval_size,), "--eval-size", minimum=8)
        if self.eval_aspect not in EVAL_ASPECTS:
            raise ConfigError(
                f"--eval-aspect '{self.eval_aspect}': expected one of {', '.join(EVAL_ASPECTS)}."
            )
        if self.aupro_variant not in AUPRO_CHOICES:
            raise ConfigError(
                f"--aupro '{self.aupro_variant}': expected one of {', '.join(AUPRO_CHOICES)}."
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"--precision '{self.precision}': expected one of {', '.join(PRECISIONS)}."
            )
        _check_ints((self.batch_size,), "--batch-size", minimum=1)
        _check_ints((self.overlays,), "--overlays", minimum=0)
        for name, options in self.method_options.items():
            if name != ALL_METHODS and name not in self.methods:
                raise ConfigError(
                    f"--option given for method '{name}', which is not in --method "
                    f"({', '.join(self.methods)})."
                )
            if not isinstance(options, dict) or "backbone" in options:
                raise ConfigError(
                    f"--option for '{name}' must be key=value pairs other than 'backbone' "
                    "(use --backbone)."
                )
        if self.dataset == SYNTHETIC:
            s = self.synthetic
            _check_ints((s.image_size,), "--synth-image-size", minimum=16)
            _check_ints((s.n_train, s.n_test_good, s.n_test_defect), "--synth-counts", minimum=1)
        return self

    # -- derived values -----------------------------------------------------------------

    def options_for(self, spec: MethodSpec, layout: str) -> dict[str, Any]:
        """Options passed to a method: its dataset defaults, then "*" options, then its own,
        parsed against the method's declared option types (one-line errors)."""
        options = dict(spec.dataset_defaults.get(layout, {}))
        options.update(self.method_options.get(ALL_METHODS, {}))
        options.update(self.method_options.get(spec.name, {}))
        return spec.coerce_options(options)

    def eval_size_for(self, spec: MethodSpec) -> int:
        """The evaluation size of a method: ``eval_size`` or the method's protocol size."""
        return self.eval_size if self.eval_size is not None else spec.eval_size

    def eval_aspect_for(self, options: dict[str, Any]) -> str:
        """The resolved aspect ("squash" or "keep") for a method with these options."""
        if self.eval_aspect != "auto":
            return self.eval_aspect
        return "keep" if options.get("tiling") == "tiles" else "squash"

    def dataset_identity(self, layout: str) -> dict[str, Any]:
        """What identifies the data: the generator parameters, or the resolved root."""
        if self.dataset == SYNTHETIC:
            return {"dataset": SYNTHETIC, "synthetic": asdict(self.synthetic)}
        root = None if self.root is None else str(Path(self.root).expanduser().resolve())
        return {"dataset": layout, "root": root}

    # -- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown benchmark configuration key(s): {', '.join(unknown)}.")
        values = dict(data)
        for name in ("categories", "methods", "shots", "seeds"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        if "synthetic" in values:
            synth = dict(values["synthetic"])
            synth["categories"] = tuple(synth.get("categories", SyntheticOptions.categories))
            values["synthetic"] = SyntheticOptions(**synth)
        return cls(**values)

    def with_changes(self, **changes: Any) -> BenchmarkConfig:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def _check_ints(values: Any, option: str, minimum: int, unique: bool = False) -> None:
    if not isinstance(values, tuple | list) or not values:
        raise ConfigError(f"{option} needs at least one integer.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{option} must be integers >= {minimum}, got {value!r}.")
    if unique and len(set(values)) != len(values):
        raise ConfigError(f"{option} lists a value twice: {list(values)}.")


def stable_hash(data: Any) -> str:
    """A short sha256 of ``data``'s canonical JSON (sorted keys)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_shots(text: str) -> tuple[int, ...]:
    """``"1,4,full"`` -> ``(1, 4, FULL_SHOT)`` (``full`` or ``all``: every normal image)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    words = {"full", "all"}
    rest = ",".join(i for i in items if i.lower() not in words)
    values = parse_int_list(rest, "--shots") if rest else ()
    if any(i.lower() in words for i in items):
        values = (*values, FULL_SHOT)
    if not values:
        raise ConfigError(f"--shots needs at least one value, got '{text}'.")
    return values


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; a :class:`ConfigError` names ``option`` otherwise."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        values = tuple(int(item) for item in items)
    except ValueError:
        raise ConfigError(
            f"{option} must be comma-separated integers (e.g. 0,1,2), got '{text}'."
        ) from None
    if not values:
        raise ConfigError(f"{option} needs at least one integer, got '{text}'.")
    return values


def parse_name_list(text: str, option: str) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``; empty lists are an error naming ``option``."""
    names = tuple(item.strip() for item in text.split(",") if item.strip())
    if not names:
        raise ConfigError(f"{option} needs at least one name, got '{text}'.")
    return names


def parse_option(text: str) -> tuple[str, str, Any]:
    """``"anoclip.smoothing=gaussian"`` -> ``("anoclip", "smoothing", "gaussian")``.

    Without a ``method.`` prefix the option applies to every method (``"*"``). The value
    stays text until :meth:`BenchmarkConfig.options_for` parses it against the option's type.
    """
    key, value = parse_key_value(text, "--option", "[METHOD.]KEY=VALUE")  # value: text
    method, _, name = key.rpartition(".")
    method, name = method.strip() or ALL_METHODS, name.strip()
    if not name:
        raise ConfigError(f"--option must look like [METHOD.]KEY=VALUE, got '{text}'.")
    return method, name, value
