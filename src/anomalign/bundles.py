"""Detector bundles: one safetensors file holding a fitted detector.

Tensors (text features, memory banks, learned prompts, ...) are stored as safetensors;
everything else (method, backbone spec, options, threshold, calibration, provenance) is
a JSON manifest in the file's metadata. Loading never unpickles anything, and writes
are atomic (temporary file, then rename), so a crash never leaves half a bundle.

Loading checks the file in three steps, each failure one :class:`DataError` line naming
the file: the metadata and manifest against a schema (:class:`BundleManifest`); a
SHA-256 over the manifest and every tensor's name, dtype, shape and bytes (a flipped
bit is caught); and, when the method rebuilds itself, every tensor's name, shape and
dtype against what the method expects (:func:`check_tensors` with :class:`TensorSpec`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from anomalign import __version__
from anomalign.errors import AnomalignError, DataError
from anomalign.io import atomic_path

if TYPE_CHECKING:  # torch and safetensors load when a bundle is read, written or checked,
    import torch  # so that importing this module (and the Detector API) stays torch-free

BUNDLE_FORMAT = "anomalign-detector"
BUNDLE_VERSION = 2
BUNDLE_SUFFIX = ".anomalign"
#: Largest manifest (JSON text in the safetensors header) a bundle may hold.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

M = TypeVar("M", bound=BaseModel)


class ThresholdRecord(BaseModel):
    """Schema of ``extra["threshold"]`` (see :class:`anomalign.thresholds.Threshold`)."""

    value: float = Field(allow_inf_nan=False)
    mode: Literal["manual", "fpr", "f1"] = "manual"
    fpr: float | None = Field(default=None, ge=0.0, le=1.0)
    source: str = ""
    stats: dict[str, Any] = Field(default_factory=dict)


class CalibrationRecord(BaseModel):
    """Schema of ``extra["calibration"]`` (see :class:`anomalign.calibration.Calibration`)."""

    map_low: float = Field(default=0.0, allow_inf_nan=False)
    map_high: float = Field(default=1.0, allow_inf_nan=False)
    score_low: float | None = Field(default=None, allow_inf_nan=False)
    score_high: float | None = Field(default=None, allow_inf_nan=False)
    n_images: int = Field(default=0, ge=0)
    source: str = ""
    rule: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> CalibrationRecord:
        if self.map_high <= self.map_low:
            raise ValueError(f"map_high ({self.map_high}) must exceed map_low ({self.map_low})")
        return self


class StandardExtra(BaseModel):
    """The ``extra`` entries every bundle may carry besides its method's own."""

    model_config = ConfigDict(extra="allow")

    threshold: ThresholdRecord | None = None
    calibration: CalibrationRecord | None = None
    fit_record: dict[str, Any] = Field(default_factory=dict)


class BundleManifest(BaseModel):
    """Schema of the JSON manifest every bundle carries."""

    model_config = ConfigDict(extra="forbid", strict=True)

    method: str = Field(min_length=1, max_length=200)
    backbone: str = Field(min_length=1, max_length=4000)
    config: dict[str, Any]
    extra: dict[str, Any] = Field(default_factory=dict)
    anomalign_version: str = "unknown"


@dataclass
class DetectorBundle:
    """Everything needed to rebuild a fitted detector without its training data.

    ``source`` is where the bundle was read from (None for one built in memory); errors
    found while rebuilding a detector from it name that file.
    """

    method: str
    backbone: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def where(self) -> str:
        """How error messages name this bundle."""
        return f"Detector bundle '{self.source}'" if self.source else "Detector bundle"

    def error(self, message: str) -> DataError:
        """A :class:`DataError` about this bundle, naming its file, on one line."""
        return DataError(f"{self.where()}: {_one_line(message)}")

    @contextmanager
    def naming_errors(self) -> Iterator[None]:
        """Re-raise a user-facing error from inside the block with this bundle's file named
        (e.g. an invalid option in the manifest while a method rebuilds itself)."""
        try:
            yield
        except AnomalignError as error:
            if self.source is None or self.source in str(error):
                raise
            message = f"{self.where()}: {_one_line(str(error))}"
            try:
                renamed = type(error)(message)
            except TypeError:
                renamed = DataError(message)
            raise renamed from None

    def extra_as(self, model: type[M]) -> M:
        """``extra`` validated against a method's pydantic ``model`` (unknown keys allowed)."""
        try:
            return model.model_validate(self.extra)
        except ValidationError as error:
            raise self.error(f"invalid 'extra' in the manifest: {_first_problem(error)}") from None


@dataclass(frozen=True)
class TensorSpec:
    """What one bundle tensor must look like.

    ``shape`` holds an int (that exact size) or a name per dimension; a named dimension
    may have any size of at least ``min_size``, but the same size everywhere the name
    recurs (within one :func:`check_tensors` call). ``shape=None`` accepts any shape
    with at least one element. ``dtype`` is a ``torch.dtype`` or its name ("float32").
    """

    shape: tuple[int | str, ...] | None
    dtype: torch.dtype | str = "float32"
    min_size: int = 1


def _one_line(message: str) -> str:
    """A multi-line message (e.g. a list of validation problems) joined into one line."""
    lines = [line.strip().removeprefix("- ") for line in message.splitlines() if line.strip()]
    return " ".join(lines[:1] + [f"{line};" for line in lines[1:-1]] + lines[1:][-1:])


def _first_problem(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in item["loc"]) or "manifest"
    message = "required field is missing" if item["type"] == "missing" else item["msg"]
    return f"{where}: {message}"


def _shape_text(shape: tuple[int | str, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tensors(
    bundle: DetectorBundle,
    expected: Mapping[str, TensorSpec],
    dims: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Check that ``bundle`` holds exactly the ``expected`` tensors with their shapes and
    dtypes; return the sizes of the named dimensions. ``dims`` fixes some names up front
    (e.g. the backbone's embedding width). Raises :class:`DataError` naming the file."""
    import torch

    sizes: dict[str, int] = dict(dims or {})
    missing = sorted(set(expected) - set(bundle.tensors))
    if missing:
        raise bundle.error(f"tensor(s) {missing} are missing; expected {sorted(expected)}.")
    unknown = sorted(set(bundle.tensors) - set(expected))
    if unknown:
        raise bundle.error(f"unexpected tensor(s) {unknown}; expected {sorted(expected)}.")
    for name in sorted(expected):
        spec, tensor = expected[name], bundle.tensors[name]
        want = "of any shape" if spec.shape is None else _shape_text(spec.shape)
        dtype = getattr(torch, spec.dtype) if isinstance(spec.dtype, str) else spec.dtype
        if tensor.dtype != dtype:
            raise bundle.error(
                f"tensor '{name}' has dtype {tensor.dtype}; expected {dtype} {want}."
            )
        if spec.shape is None:
            if tensor.numel() == 0:
                raise bundle.error(f"tensor '{name}' is empty.")
            continue
        if tensor.dim() != len(spec.shape):
            raise bundle.error(f"tensor '{name}' has shape {tuple(tensor.shape)}; expected {want}.")
        for axis, (dim, size) in enumerate(zip(spec.shape, tensor.shape, strict=True)):
            if isinstance(dim, int):
                ok = size == dim
            elif dim in sizes:
                ok = size == sizes[dim]
            else:
                ok = size >= spec.min_size
                sizes[dim] = int(size)
            if not ok:
                bound = {dim: sizes.get(dim, f">= {spec.min_size}")} if isinstance(dim, str) else {}
                raise bundle.error(
                    f"tensor '{name}' has shape {tuple(tensor.shape)}; expected {want}"
                    + (f" with {dim} = {bound[dim]}" if bound else "")
                    + f" (axis {axis})."
                )
    return sizes


def tensor_digest(manifest_text: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the manifest text and every tensor's name, dtype, shape and bytes."""
    import torch

    digest = hashlib.sha256()
    digest.update(manifest_text.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        header = json.dumps([name, str(tensor.dtype), list(tensor.shape)])
        digest.update(header.encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _finite_json(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_json(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite_json(v) for v in value)
    return True


def save_bundle(bundle: DetectorBundle, path: str | Path) -> Path:
    """Write ``bundle`` to ``path`` atomically and return the path."""
    from safetensors.torch import save_file

    path = Path(path)
    manifest = BundleManifest(
        method=bundle.method,
        backbone=bundle.backbone,
        config=bundle.config,
        extra=bundle.extra,
        anomalign_version=__version__,
    ).model_dump()
    try:
        StandardExtra.model_validate(manifest["extra"])
    except ValidationError as error:
        raise DataError(f"Cannot save '{path}': extra.{_first_problem(error)}.") from None
    if not _finite_json(manifest):
        raise DataError(f"Cannot save '{path}': the manifest holds NaN or infinite numbers.")
    manifest_text = json.dumps(manifest, sort_keys=True, allow_nan=False, default=str)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in bundle.tensors.items()}
    metadata = {
        "format": BUNDLE_FORMAT,
        "version": str(BUNDLE_VERSION),
        "manifest": manifest_text,
        "sha256": tensor_digest(manifest_text, tensors),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _read_manifest(path: Path, metadata: Mapping[str, str]) -> BundleManifest:
    where = f"Detector bundle '{path}'"
    if metadata.get("format") != BUNDLE_FORMAT:
        raise DataError(f"'{path}' is a safetensors file but not an anomalign detector bundle.")
    version_text = metadata.get("version", "")
    if not version_text.isdigit() or len(version_text) > 6:
        raise DataError(f"{where}: format version {version_text!r} is not a whole number.")
    version = int(version_text)
    if version > BUNDLE_VERSION:
        raise DataError(
            f"{where} has format version {version}; this anomalign reads up to version "
            f"{BUNDLE_VERSION}. Upgrade anomalign."
        )
    if version < BUNDLE_VERSION:
        raise DataError(
            f"{where} has format version {version} (no checksum); this anomalign reads "
            f"version {BUNDLE_VERSION}. Fit the detector again with `anomalign fit`."
        )
    text = metadata.get("manifest")
    if not isinstance(text, str):
        raise DataError(f"{where}: the manifest is missing.")
    if len(text) > MAX_MANIFEST_BYTES:
        raise DataError(f"{where}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes.")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise DataError(f"{where}: the manifest is not valid JSON ({error}).") from None
    if not isinstance(data, dict):
        raise DataError(f"{where}: the manifest is a {type(data).__name__}, not a JSON object.")
    try:
        manifest = BundleManifest.model_validate(data)
        StandardExtra.model_validate(manifest.extra)
    except ValidationError as error:
        prefix = "" if error.title == BundleManifest.__name__ else "extra."
        raise DataError(f"{where}: invalid manifest: {prefix}{_first_problem(error)}.") from None
    except RecursionError:
        raise DataError(f"{where}: the manifest is nested too deeply.") from None
    return manifest


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> DetectorBundle:
    """Read and verify a bundle; raise :class:`DataError` naming the file when it is not
    one, its manifest breaks the schema, or its checksum does not match."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"Detector bundle '{path}' does not exist.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            manifest = _read_manifest(path, metadata)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except DataError:
        raise
    except Exception as error:
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise DataError(
            f"'{path}' is not a readable detector bundle (expected a safetensors file written "
            f"by `anomalign fit`): {detail}"
        ) from None
    checksum = metadata.get("sha256")
    if checksum != tensor_digest(metadata["manifest"], tensors):
        raise DataError(
            f"Detector bundle '{path}' is corrupt: its checksum does not match its content "
            "(the file was changed or damaged after it was written)."
        )
    if str(device) != "cpu":
        tensors = {key: value.to(device) for key, value in tensors.items()}
    return DetectorBundle(
        method=manifest.method,
        backbone=manifest.backbone,
        config=manifest.config,
        tensors=tensors,
        extra=manifest.extra,
        source=str(path),
    )
