"""What an exported model says about itself: the ``anomalign.*`` ONNX metadata_props.

Torch-free (read by :mod:`anomalign.export.runtime`). Every value is a JSON string:

* ``anomalign.format`` / ``anomalign.format_version``: "anomalign-onnx", 1.
* ``anomalign.method``: the registered method name.
* ``anomalign.preprocessing``: how to turn an image into the graph's input:
  ``image_size [H, W]``, ``resize`` ("squash"), ``interpolation`` (PIL filter),
  ``mean`` / ``std`` (on values in [0, 1]), ``channel_order`` ("rgb", or "bgr" for
  FineGrainedAD's official preset), ``dtype`` ("float32"), ``decode_max_side`` (large
  files are decoded shrunk, as the methods do) and ``pre_resize`` (FineGrainedAD's
  official cv2-linear 1024 px resize first, or null).
* ``anomalign.outputs``: ``map_size [h, w]``, ``batch`` (an int, or "dynamic"),
  ``image_score`` and the output names.
* ``anomalign.threshold`` / ``anomalign.calibration``: as in the bundle (``null``: none).
* ``anomalign.provenance``: the detector's ``describe()``, the bundle file and its
  SHA-256, the exporter, opset, fp16, anomalign and torch versions, and when.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from anomalign.errors import DataError

FORMAT = "anomalign-onnx"
FORMAT_VERSION = 1
PREFIX = "anomalign."
INPUT_NAME = "pixels"
OUTPUT_NAMES = ("score", "map")


@dataclass(frozen=True)
class Preprocessing:
    """Image -> input tensor: squash resize to ``image_size`` with ``interpolation``,
    ``(x / 255 - mean) / std`` per channel, in ``channel_order``."""

    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    channel_order: str = "rgb"
    resize: str = "squash"
    dtype: str = "float32"
    #: files at least twice this long are decoded shrunk by an integer factor (Pillow draft)
    decode_max_side: int | None = 2048
    #: a cv2-linear squash resize to this square size first (FineGrainedAD's official loaders)
    pre_resize: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "channel_order": self.channel_order,
            "resize": self.resize,
            "dtype": self.dtype,
            "decode_max_side": self.decode_max_side,
            "pre_resize": self.pre_resize,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            interpolation=str(data.get("interpolation", "bicubic")),
            channel_order=str(data.get("channel_order", "rgb")),
            resize=str(data.get("resize", "squash")),
            dtype=str(data.get("dtype", "float32")),
            decode_max_side=data.get("decode_max_side"),
            pre_resize=data.get("pre_resize"),
        )


@dataclass
class ExportMetadata:
    """The parsed ``anomalign.*`` metadata of an exported model."""

    method: str
    preprocessing: Preprocessing
    outputs: dict[str, Any]
    threshold: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def map_size(self) -> tuple[int, int]:
        h, w = self.outputs["map_size"]
        return int(h), int(w)

    @property
    def batch(self) -> int | None:
        """The fixed batch size of the graph, or None when it is dynamic."""
        batch = self.outputs.get("batch", 1)
        return None if batch == "dynamic" else int(batch)

    def to_props(self) -> dict[str, str]:
        """As ONNX ``metadata_props`` (string -> JSON string)."""
        values = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "preprocessing": self.preprocessing.to_dict(),
            "outputs": self.outputs,
            "threshold": self.threshold,
            "calibration": self.calibration,
            "provenance": self.provenance,
        }
        return {
            PREFIX + k: json.dumps(v, sort_keys=True, allow_nan=False) for k, v in values.items()
        }

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ExportMetadata:
        """Parse ``metadata_props``; a :class:`DataError` when it is not an anomalign export."""
        try:
            values = {
                k[len(PREFIX) :]: json.loads(v) for k, v in props.items() if k.startswith(PREFIX)
            }
        except json.JSONDecodeError as error:
            raise DataError(f"{source} has unreadable anomalign metadata: {error}") from error
        if values.get("format") != FORMAT:
            raise DataError(
                f"{source} is an ONNX model but not one exported by `anomalign export` "
                "(no anomalign metadata)."
            )
        if int(values.get("format_version", 0)) > FORMAT_VERSION:
            raise DataError(
                f"{source} has export format version {values['format_version']}; this "
                f"anomalign reads up to version {FORMAT_VERSION}. Upgrade anomalign."
            )
        try:
            return cls(
                method=str(values["method"]),
                preprocessing=Preprocessing.from_dict(values["preprocessing"]),
                outputs=dict(values["outputs"]),
                threshold=values.get("threshold"),
                calibration=values.get("calibration"),
                provenance=dict(values.get("provenance") or {}),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise DataError(f"{source} has incomplete anomalign metadata ({error}).") from error
