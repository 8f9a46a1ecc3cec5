"""Detector bundles: one safetensors file holding a fitted detector.

Tensors (text features, memory banks, learned prompts, ...) are stored as safetensors;
everything else (method, backbone spec, options, threshold, calibration, provenance) is
a JSON manifest in the file's metadata. Loading never unpickles anything, and writes
are atomic (temporary file, then rename), so a crash never leaves half a bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomalign import __version__
from anomalign.errors import DataError
from anomalign.io import atomic_path

if TYPE_CHECKING:  # torch and safetensors load when a bundle is read or written, so that
    import torch  # importing this module (and the Detector API) stays torch-free

BUNDLE_FORMAT = "anomalign-detector"
BUNDLE_VERSION = 1
BUNDLE_SUFFIX = ".anomalign"


@dataclass
class DetectorBundle:
    """Everything needed to rebuild a fitted detector without its training data."""

    method: str
    backbone: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def save_bundle(bundle: DetectorBundle, path: str | Path) -> Path:
    """Write ``bundle`` to ``path`` atomically and return the path."""
    from safetensors.torch import save_file

    path = Path(path)
    manifest = {
        "method": bundle.method,
        "backbone": bundle.backbone,
        "config": bundle.config,
        "extra": bundle.extra,
        "anomalign_version": __version__,
    }
    metadata = {
        "format": BUNDLE_FORMAT,
        "version": str(BUNDLE_VERSION),
        "manifest": json.dumps(manifest, sort_keys=True),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in bundle.tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> DetectorBundle:
    """Read a bundle; raise :class:`DataError` naming the file when it is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"Detector bundle '{path}' does not exist.")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as error:
        raise DataError(
            f"'{path}' is not a readable detector bundle (expected a safetensors file written "
            f"by `anomalign fit`): {error}"
        ) from error
    if metadata.get("format") != BUNDLE_FORMAT:
        raise DataError(f"'{path}' is a safetensors file but not an anomalign detector bundle.")
    if int(metadata.get("version", "0")) > BUNDLE_VERSION:
        raise DataError(
            f"Detector bundle '{path}' has format version {metadata.get('version')}; this "
            f"anomalign reads up to version {BUNDLE_VERSION}. Upgrade anomalign."
        )
    manifest = json.loads(metadata["manifest"])
    return DetectorBundle(
        method=manifest["method"],
        backbone=manifest["backbone"],
        config=manifest["config"],
        tensors=tensors,
        extra=manifest.get("extra", {}),
    )
