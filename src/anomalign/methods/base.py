"""The one detector type: every method, every loaded bundle and every later surface is one.

:class:`Detector` is an abstract base class. A method implements five hooks (``_fit``,
``_predict``, ``_describe``, ``_bundle`` and the class method ``_restore``) and gets the
rest from here: keyword-only ``fit`` / ``predict`` on paths, folders, PIL images and
arrays; an optional decision :class:`~anomalign.thresholds.Threshold` and map
:class:`~anomalign.calibration.Calibration` (set by :meth:`Detector.calibrate`);
bundles (:meth:`save`, :meth:`from_bundle`); :meth:`clone`; and a content
:meth:`fingerprint`. A freshly fitted detector and one loaded from its bundle are the same
kind of object and predict the same.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np

from anomalign.bundles import DetectorBundle, save_bundle
from anomalign.calibration import Calibration, calibrate
from anomalign.data.images import ImageInput, load_rgb
from anomalign.data.inputs import expand_inputs
from anomalign.data.transforms import resize_map
from anomalign.errors import ConfigError
from anomalign.results import Prediction
from anomalign.thresholds import Threshold, manual_threshold, threshold_at_fpr, threshold_f1
from anomalign.viz.render import MAX_SIDE, fit_size

OutputSize = int | tuple[int, int] | Literal["image"] | None
#: Keys the base class adds to a bundle's ``extra``.
EXTRA_KEYS: tuple[str, ...] = ("threshold", "calibration", "fit_record")


def describe_input(item: ImageInput) -> str:
    """A path as text, or the type of an in-memory image (for provenance records)."""
    if isinstance(item, str | Path):
        return str(item)
    return f"<{type(item).__name__}>"


def gather_images(items: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """Images from paths, folders (expanded, sorted), PIL images and numpy arrays."""
    if not isinstance(items, list | tuple):
        items = [items]
    gathered: list[ImageInput] = []
    for item in items:
        if isinstance(item, str | Path):
            gathered += expand_inputs([item])
        else:
            gathered.append(item)
    return gathered


class Detector(ABC):
    """An anomaly detector: fit on normal images (none for zero-shot methods), then predict.

    Attributes:
        name: the registered method name (e.g. ``"anoclip+"``), written into bundles.
        threshold: decision threshold (None: predictions carry scores and maps only).
        calibration: the fixed map range from normal images (nominal [0, 1] until set).
        fit_record: provenance of the last fit and calibration (images, timings, notes).
        path: the bundle file this detector was loaded from or saved to, if any.
    """

    name: str = ""
    #: The method's options dataclass (frozen, ``Literal`` types carry the choices).
    config_class: ClassVar[type | None] = None

    def __init__(self) -> None:
        self.threshold: Threshold | None = None
        self.calibration: Calibration = Calibration()
        self.fit_record: dict[str, Any] = {}
        self.path: Path | None = None

    # -- hooks each method implements ----------------------------------------------------

    @abstractmethod
    def _fit(self, images: list[ImageInput], *, category: str | None, **inputs: Any) -> None:
        """Learn from the normal ``images`` (empty for zero-shot use)."""

    @abstractmethod
    def _predict(
        self,
        images: list[ImageInput],
        *,
        category: str | None,
        output_size: int | tuple[int, int] | None,
        batch_size: int,
        **inputs: Any,
    ) -> Prediction:
        """Scores and raw maps (at ``output_size``, or the method's own size when None)."""

    @abstractmethod
    def _describe(self) -> dict[str, Any]:
        """Method provenance: method, preset, options, backbone (incl. untrained flag)."""

    @abstractmethod
    def _bundle(self) -> DetectorBundle:
        """The fitted method state as a bundle (without threshold and calibration)."""

    @classmethod
    @abstractmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> Self:
        """Rebuild the method state written by :meth:`_bundle`."""

    def get_params(self) -> dict[str, Any]:
        """Constructor keyword arguments (besides ``backbone``) that rebuild this detector
        unfitted: the preset and every option (scikit-learn's ``get_params``)."""
        config = getattr(self, "config", None)
        if config is None:
            return {}
        return dict(config.to_dict())

    def reset(self) -> None:  # noqa: B027 - an optional hook
        """Forget state carried from one prediction to the next (none by default; the
        official AnoCLIP+ preset carries its optimizer across a category's images)."""

    # -- fitting -------------------------------------------------------------------------

    def fit(
        self,
        normal_images: ImageInput | Sequence[ImageInput] = (),
        *,
        category: str | None = None,
        **method_inputs: Any,
    ) -> Self:
        """Fit on normal reference images (paths, folders, PIL images, arrays); returns self.

        Zero-shot methods need none (they record ``category`` for their prompts);
        ``method_inputs`` are the method's own (e.g. FineGrainedAD's ``captions``).
        """
        images = gather_images(normal_images) if normal_images is not None else []
        started = time.perf_counter()
        self._fit(images, category=category, **method_inputs)
        self.fit_record = {
            "category": category,
            "normal_images": [describe_input(i) for i in images],
            "fit_seconds": round(time.perf_counter() - started, 3),
            "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return self

    # -- prediction ----------------------------------------------------------------------

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        category: str | None = None,
        output_size: OutputSize = None,
        batch_size: int = 8,
        **method_inputs: Any,
    ) -> Prediction:
        """Score images, compute their anomaly maps and decide (when a threshold is set).

        Args:
            images: a path, folder, PIL image or numpy array, or a list of them.
            category: the part's name, for methods whose prompts use it (else the fitted one).
            output_size: map size: None = the method's own (its protocol size), an int or
                ``(height, width)``, or ``"image"`` = each image's own size with the long
                side at most 1024 px (a list of maps when sizes differ).
            batch_size: images per forward pass.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
        items = gather_images(images)
        per_image = output_size == "image"
        if per_image:
            items = [load_rgb(item) for item in items]
        elif isinstance(output_size, str):
            raise ConfigError(
                f"output_size must be an int, (h, w), 'image' or None, got {output_size!r}."
            )
        parts = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            part = self._predict(
                chunk,
                category=category,
                output_size=None if per_image else output_size,  # type: ignore[arg-type]
                batch_size=batch_size,
                **method_inputs,
            )
            if per_image:
                part.maps = [
                    np.asarray(resize_map(m, fit_size(*rgb.shape[:2], MAX_SIDE)), np.float32)
                    for rgb, m in zip(chunk, part.maps, strict=True)  # type: ignore[misc]
                ]
            parts.append(part)
        if not parts:
            raise ConfigError("predict() got no images.")
        prediction = Prediction.concat(parts)
        prediction.calibration = self.calibration
        prediction.decide(None if self.threshold is None else self.threshold.value)
        prediction.info["threshold"] = prediction.threshold
        return prediction

    def _scores_and_maps(
        self, images: Sequence[ImageInput], batch_size: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Raw scores and maps at the method's own size, then :meth:`reset`."""
        prediction = self.predict(list(images), batch_size=batch_size)
        self.reset()
        return prediction.scores, list(prediction.maps)

    # -- calibration and thresholds ------------------------------------------------------

    def calibrate(
        self,
        normal_images: ImageInput | Sequence[ImageInput],
        *,
        source: str = "normal images",
        batch_size: int = 8,
    ) -> Calibration:
        """Set the fixed heatmap range from normal images (see :mod:`anomalign.calibration`);
        returns it. Heatmaps are never normalised per image."""
        items = gather_images(normal_images)
        scores, maps = self._scores_and_maps(items, batch_size)
        self.calibration = calibrate(maps, scores, source=f"{source} ({len(items)})")
        return self.calibration

    def set_threshold(self, value: float | Threshold | None, source: str = "set by hand") -> None:
        """Set (or with None, remove) the decision threshold."""
        if value is None or isinstance(value, Threshold):
            self.threshold = value
        else:
            self.threshold = manual_threshold(value, source)

    def threshold_at_fpr(
        self,
        normal_images: ImageInput | Sequence[ImageInput],
        fpr: float,
        *,
        source: str = "normal validation images",
        batch_size: int = 8,
    ) -> Threshold:
        """Set the threshold that flags at most ``fpr`` of these normal images."""
        items = gather_images(normal_images)
        scores, _ = self._scores_and_maps(items, batch_size)
        self.threshold = threshold_at_fpr(scores, fpr, source=f"{source} ({len(items)})")
        return self.threshold

    def threshold_f1(
        self,
        images: Sequence[ImageInput],
        labels: Sequence[int],
        *,
        source: str = "labelled validation images",
        batch_size: int = 8,
    ) -> Threshold:
        """Set the F1-optimal threshold on labelled images (0 normal, 1 anomalous)."""
        items = list(images)
        scores, _ = self._scores_and_maps(items, batch_size)
        self.threshold = threshold_f1(labels, scores, source=f"{source} ({len(items)})")
        return self.threshold

    # -- provenance ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The method's provenance plus threshold, calibration, fit record and bundle path."""
        return {
            **self._describe(),
            "bundle": None if self.path is None else str(self.path),
            "threshold": None if self.threshold is None else self.threshold.to_dict(),
            "calibration": self.calibration.to_dict(),
            "fit": self.fit_record,
        }

    @property
    def untrained_backbone(self) -> bool:
        """True when the backbone has random weights: outputs are for pipeline checks only."""
        return bool(self._describe().get("untrained_backbone", False))

    # -- persistence ---------------------------------------------------------------------

    def to_bundle(self) -> DetectorBundle:
        """The method's bundle with threshold, calibration and fit record in ``extra``."""
        bundle = self._bundle()
        bundle.extra = {
            **bundle.extra,
            "threshold": None if self.threshold is None else self.threshold.to_dict(),
            "calibration": self.calibration.to_dict(),
            "fit_record": self.fit_record,
        }
        return bundle

    @classmethod
    def from_bundle(
        cls, bundle: DetectorBundle, *, backbone: Any = None, device: str = "cpu"
    ) -> Self:
        """Rebuild a detector (state, threshold, calibration) from a bundle."""
        detector = cls._restore(bundle, backbone, device)
        extra = bundle.extra
        detector.threshold = Threshold.from_dict(extra.get("threshold"))
        detector.calibration = Calibration.from_dict(extra.get("calibration"))
        detector.fit_record = dict(extra.get("fit_record") or {})
        return detector

    def save(self, path: str | Path) -> Path:
        """Write the bundle atomically (one safetensors file); remember where it lives."""
        self.path = save_bundle(self.to_bundle(), path)
        return self.path

    def clone(self, *, fitted: bool = False) -> Self:
        """A new detector with the same parameters and backbone (scikit-learn's ``clone``);
        with ``fitted=True`` it also holds the fitted state, threshold and calibration, and
        predicts exactly as this one loaded from its bundle would."""
        if fitted:
            clone = type(self).from_bundle(
                self.to_bundle(), backbone=getattr(self, "backbone", None)
            )
            clone.path = self.path
            return clone
        return type(self)(backbone=getattr(self, "backbone", None), **self.get_params())

    def fingerprint(self) -> str:
        """SHA-256 of the fitted state (method, backbone, options, tensors, threshold,
        calibration): equal for equal detectors; timings and provenance are left out."""
        import torch

        bundle = self.to_bundle()
        kept = {k: v for k, v in bundle.extra.items() if k not in ("fit_record", "fit")}
        manifest = [bundle.method, bundle.backbone, bundle.config, kept]
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode())
        for key in sorted(bundle.tensors):
            tensor = bundle.tensors[key].detach().cpu().contiguous()
            digest.update(key.encode())
            digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
            digest.update(tensor.reshape(-1).view(dtype=torch.uint8).numpy().tobytes())
        return digest.hexdigest()
