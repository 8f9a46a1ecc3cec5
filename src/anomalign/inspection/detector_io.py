"""Fitted detectors with a threshold and a map calibration: fit, save, load, predict.

An :class:`Inspector` wraps a method detector (AnoCLIP, FineGrainedAD, ...) with what an
inspection line needs on top of scores and maps: a decision :class:`Threshold` and a
fixed map :class:`Calibration`. Its bundle is the method's own bundle with three more
entries in ``extra``: ``threshold``, ``calibration`` and ``inspection`` (provenance).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomalign.bundles import DetectorBundle, load_bundle, save_bundle
from anomalign.data.images import ImageInput, load_mask, load_rgb
from anomalign.data.transforms import resize_map
from anomalign.errors import ConfigError
from anomalign.inspection.calibration import Calibration, calibrate
from anomalign.inspection.inputs import expand_inputs
from anomalign.inspection.render import MAX_SIDE, fit_size, render_overlay
from anomalign.inspection.thresholds import (
    Threshold,
    manual_threshold,
    threshold_at_fpr,
    threshold_f1,
)
from anomalign.methods.anoclip import DEFAULT_BACKBONE

#: Method name -> ``"module:Class"`` (or the class) whose class method ``from_bundle``
#: rebuilds a detector; extend with :func:`register_detector_class`.
DETECTOR_CLASSES: dict[str, str | type] = {
    "anoclip": "anomalign.methods.anoclip:AnoCLIP",
    "anoclip+": "anomalign.methods.anoclip:AnoCLIP",
    "finegrainedad": "anomalign.methods.finegrainedad:FineGrainedAD",
}

#: Methods that learn nothing from normal images: their normal images may set thresholds.
ZERO_SHOT_METHODS: frozenset[str] = frozenset({"anoclip", "anoclip+"})

#: Keys this module adds to a bundle's ``extra``.
EXTRA_KEYS: tuple[str, ...] = ("threshold", "calibration", "inspection")


def register_detector_class(method: str, target: str | type) -> None:
    """Make bundles of ``method`` loadable with ``target`` (a class or ``"module:Class"``)."""
    DETECTOR_CLASSES[method.lower()] = target


def detector_class(method: str) -> type:
    """The class that rebuilds detectors of ``method`` from a bundle."""
    target = DETECTOR_CLASSES.get(method.lower())
    if target is None:
        raise ConfigError(
            f"Bundles of method '{method}' cannot be loaded by this anomalign; known methods: "
            f"{', '.join(sorted(DETECTOR_CLASSES))}."
        )
    if isinstance(target, str):
        module_name, _, class_name = target.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise ConfigError(
                f"Method '{method}' needs {target}, which this installation lacks ({error})."
            ) from error
    if not callable(getattr(target, "from_bundle", None)):
        raise ConfigError(f"{target.__name__} cannot be rebuilt from a bundle (no from_bundle).")
    return target


def _describe_input(item: ImageInput) -> str:
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


@dataclass
class InspectionResult:
    """Scores, maps and decisions for a batch of images.

    ``maps[i]`` is the raw (uncalibrated) anomaly map of image ``i``, at the image's own
    size capped to ``max_side`` on the long side, or at the requested ``output_size``;
    ``decisions`` is None when the detector has no threshold.
    """

    scores: np.ndarray
    maps: list[np.ndarray]
    decisions: np.ndarray | None
    threshold: Threshold | None
    calibration: Calibration
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def untrained_backbone(self) -> bool:
        """True when a randomly initialised backbone produced these results."""
        return bool(self.info.get("untrained_backbone", False))

    def decision(self, index: int) -> str | None:
        """The decision on image ``index``: "anomalous", "normal", or None without a threshold."""
        if self.decisions is None:
            return None
        return "anomalous" if self.decisions[index] else "normal"

    def normalized_map(self, index: int) -> np.ndarray:
        """Map ``index`` on the calibrated scale (0 = median normal pixel); not clipped."""
        return self.calibration.normalize(self.maps[index])

    def map_uint16(self, index: int) -> np.ndarray:
        """Map ``index`` as uint16 with the calibration (:meth:`Calibration.to_uint16`)."""
        return self.calibration.to_uint16(self.maps[index])

    def caption(self, index: int) -> str:
        """Score and decision as one line of text."""
        text = f"score {float(self.scores[index]):.4g}"
        if self.threshold is not None:
            verdict = "ANOMALOUS" if self.decisions[index] else "normal"  # type: ignore[index]
            text += f"  {verdict} (t={self.threshold.value:.4g})"
        return text

    def overlay(
        self,
        index: int,
        image: ImageInput,
        mask: ImageInput | None = None,
        cmap: str = "jet",
        alpha: float = 0.5,
        colorbar: bool = True,
        caption: bool = True,
    ) -> np.ndarray:
        """The overlay panel of image ``index`` (pass the same image given to predict)."""
        return render_overlay(
            load_rgb(image),
            self.maps[index],
            self.calibration,
            cmap=cmap,
            alpha=alpha,
            colorbar=colorbar,
            mask=None if mask is None else load_mask(mask),
            caption=self.caption(index) if caption else None,
            untrained=self.untrained_backbone,
        )


class Inspector:
    """A method detector plus its decision threshold and fixed map calibration.

    Build one with :func:`fit_detector` or :func:`load_detector`; :meth:`predict` accepts
    paths, PIL images and numpy arrays.
    """

    def __init__(
        self,
        detector: Any,
        threshold: Threshold | None = None,
        calibration: Calibration | None = None,
        provenance: dict[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        self.detector = detector
        self.threshold = threshold
        self.calibration = calibration or Calibration()
        self.provenance: dict[str, Any] = dict(provenance or {})
        self.path = path

    @property
    def method(self) -> str:
        return str(self.detector.name)

    @property
    def untrained_backbone(self) -> bool:
        return bool(self.detector.describe().get("untrained_backbone", False))

    def describe(self) -> dict[str, Any]:
        """The method's provenance plus threshold, calibration and where the bundle lives."""
        return {
            **self.detector.describe(),
            "bundle": None if self.path is None else str(self.path),
            "threshold": None if self.threshold is None else self.threshold.to_dict(),
            "calibration": self.calibration.to_dict(),
            "fit": self.provenance,
        }

    # -- prediction ------------------------------------------------------------------

    def _tiled(self) -> bool:
        return getattr(getattr(self.detector, "config", None), "tiling", "squash") == "tiles"

    def predict_arrays(
        self, rgbs: Sequence[np.ndarray], batch_size: int = 8
    ) -> tuple[np.ndarray, list[np.ndarray], dict[str, Any]]:
        """Scores and raw maps (at the method's output size) of decoded RGB images."""
        groups = [[r] for r in rgbs] if self._tiled() else [list(rgbs)]
        scores, maps, info = [], [], {}
        for group in groups:
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                prediction = self.detector.predict(chunk, batch_size=len(chunk))
                scores.append(prediction.scores)
                maps.extend(prediction.maps)
                info = info or dict(prediction.info)
        empty = np.zeros(0, np.float32)
        return (np.concatenate(scores) if scores else empty), maps, info

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        output_size: int | tuple[int, int] | None = None,
        batch_size: int = 8,
        max_side: int = MAX_SIDE,
    ) -> InspectionResult:
        """Score images, compute their maps and decide (when a threshold is set).

        Args:
            images: a path, folder, PIL image or numpy array, or a list of them.
            output_size: size of every map (int or ``(height, width)``); default: each
                image's own size, scaled down so that its long side is at most ``max_side``.
            batch_size: images per forward pass.
        """
        items = gather_images(images)
        scores_parts, maps, info = [], [], {}
        for start in range(0, len(items), batch_size):
            rgbs = [load_rgb(item) for item in items[start : start + batch_size]]
            scores, raw, info = self.predict_arrays(rgbs, batch_size)
            scores_parts.append(scores)
            for rgb, amap in zip(rgbs, raw, strict=True):
                size = output_size or fit_size(rgb.shape[0], rgb.shape[1], max_side)
                maps.append(np.asarray(resize_map(amap, size), np.float32))
        scores = np.concatenate(scores_parts) if scores_parts else np.zeros(0, np.float32)
        decisions = None if self.threshold is None else self.threshold.decide(scores)
        info = {**info, "threshold": None if self.threshold is None else self.threshold.value}
        return InspectionResult(scores, maps, decisions, self.threshold, self.calibration, info)

    def _scores_and_maps(
        self, images: Sequence[ImageInput], batch_size: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        scores, maps = [], []
        for start in range(0, len(images), batch_size):
            rgbs = [load_rgb(item) for item in images[start : start + batch_size]]
            chunk_scores, chunk_maps, _ = self.predict_arrays(rgbs, batch_size)
            scores.append(chunk_scores)
            maps += chunk_maps
        return np.concatenate(scores), maps

    # -- calibration and thresholds ----------------------------------------------------

    def calibrate(
        self,
        normal_images: ImageInput | Sequence[ImageInput],
        source: str = "normal images",
        batch_size: int = 8,
    ) -> Calibration:
        """Set the fixed map range from normal images (see :mod:`.calibration`)."""
        images = gather_images(normal_images)
        scores, maps = self._scores_and_maps(images, batch_size)
        self.calibration = calibrate(maps, scores, source=f"{source} ({len(images)})")
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
        source: str = "normal validation images",
        batch_size: int = 8,
    ) -> Threshold:
        """Set the threshold that flags at most ``fpr`` of these normal images."""
        images = gather_images(normal_images)
        scores, _ = self._scores_and_maps(images, batch_size)
        self.threshold = threshold_at_fpr(scores, fpr, source=f"{source} ({len(images)})")
        return self.threshold

    def threshold_f1(
        self,
        images: Sequence[ImageInput],
        labels: Sequence[int],
        source: str = "labelled validation images",
        batch_size: int = 8,
    ) -> Threshold:
        """Set the F1-optimal threshold on labelled images (0 normal, 1 anomalous)."""
        items = list(images)
        scores, _ = self._scores_and_maps(items, batch_size)
        self.threshold = threshold_f1(labels, scores, source=f"{source} ({len(items)})")
        return self.threshold

    # -- persistence -------------------------------------------------------------------

    def to_bundle(self) -> DetectorBundle:
        """The method's bundle with threshold, calibration and provenance in ``extra``."""
        bundle = self.detector.to_bundle()
        bundle.extra = {
            **bundle.extra,
            "threshold": None if self.threshold is None else self.threshold.to_dict(),
            "calibration": self.calibration.to_dict(),
            "inspection": self.provenance,
        }
        return bundle

    def save(self, path: str | Path) -> Path:
        """Write the bundle atomically; remember where it lives."""
        self.path = save_bundle(self.to_bundle(), path)
        return self.path

    def fingerprint(self) -> str:
        """SHA-256 of the bundle content (manifest and tensors): equal for equal detectors."""
        digest = hashlib.sha256()
        bundle = self.to_bundle()
        manifest = [bundle.method, bundle.backbone, bundle.config, bundle.extra]
        digest.update(json.dumps(manifest, sort_keys=True, default=str).encode())
        for key in sorted(bundle.tensors):
            tensor = bundle.tensors[key].detach().cpu().contiguous()
            digest.update(key.encode())
            digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
            digest.update(tensor.view(-1).view(dtype=torch.uint8).numpy().tobytes())
        return digest.hexdigest()


def load_detector(path: str | Path, device: str = "cpu", backbone: Any | None = None) -> Inspector:
    """Load a detector bundle written by ``anomalign fit`` (or :meth:`Inspector.save`).

    Args:
        path: the ``.anomalign`` file.
        device: where to run the backbone.
        backbone: an already loaded :class:`~anomalign.backbones.Backbone` (or spec string)
            to use instead of loading the bundle's; it must be the same backbone.
    """
    bundle = load_bundle(path)
    with bundle.naming_errors():
        cls = detector_class(bundle.method)
        detector = cls.from_bundle(bundle, backbone=backbone, device=device)
    extra = bundle.extra
    return Inspector(
        detector,
        Threshold.from_dict(extra.get("threshold")),
        Calibration.from_dict(extra.get("calibration")),
        provenance=extra.get("inspection", {}),
        path=Path(path),
    )


def _rebuilt(detector: Any) -> Any:
    """The detector rebuilt from its own bundle, so that it predicts exactly as a loaded one
    (methods with state carried across images start afresh)."""
    bundle = detector.to_bundle()
    return detector_class(bundle.method).from_bundle(bundle, backbone=detector.backbone)


def fit_detector(
    method: str,
    normal: ImageInput | Sequence[ImageInput] = (),
    category: str | None = None,
    backbone: Any = DEFAULT_BACKBONE,
    *,
    preset: str = "default",
    method_options: dict[str, Any] | None = None,
    fit_options: dict[str, Any] | None = None,
    device: str = "cpu",
    val_normal: ImageInput | Sequence[ImageInput] = (),
    val_anomalous: ImageInput | Sequence[ImageInput] = (),
    threshold: float | None = None,
    fpr: float | None = None,
    f1: bool = False,
    batch_size: int = 8,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> Inspector:
    """Fit a method, calibrate its maps, set its threshold, and optionally save the bundle.

    Args:
        method: a registered method name ("anoclip", "anoclip+", "finegrainedad", ...).
        normal: the normal reference images (paths, folders, PIL images, arrays). Zero-shot
            methods need none; theirs are used only for calibration and the threshold.
        category: the part's name (prompts; FineGrainedAD's caption when none is given).
        backbone: a spec string or a loaded backbone.
        preset, method_options: passed to the method's constructor.
        fit_options: extra keyword arguments of the method's ``fit`` (e.g. ``captions``).
        val_normal, val_anomalous: validation images; calibration uses ``val_normal`` (else
            ``normal``).
        threshold, fpr, f1: at most one: a manual threshold; the threshold flagging at most
            ``fpr`` of the normal validation images; or the F1-optimal one on the labelled
            validation images.
        out: where to write the bundle (the returned inspector remembers it).
        log: called with notes worth showing to the user (e.g. biased calibration).
    """
    from anomalign.methods import create_method

    chosen = [threshold is not None, fpr is not None, bool(f1)]
    if sum(chosen) > 1:
        raise ConfigError("Choose at most one of a manual threshold, fpr and f1.")
    say = log or (lambda message: None)
    started = time.perf_counter()
    normal_items = gather_images(normal) if normal is not None else []
    val_normal_items = gather_images(val_normal) if val_normal else []
    val_anomalous_items = gather_images(val_anomalous) if val_anomalous else []
    zero_shot = method.lower() in ZERO_SHOT_METHODS
    # check the threshold's images before fitting, which may take minutes
    if fpr is not None and not val_normal_items and not (zero_shot and normal_items):
        raise ConfigError(
            f"A false-positive-rate threshold for {method} needs normal validation images"
            + (
                "."
                if zero_shot
                else " (the reference images are in its memory and score as perfectly normal)."
            )
        )
    if f1 and (not val_normal_items or not val_anomalous_items):
        raise ConfigError("An F1-optimal threshold needs normal and anomalous validation images.")
    detector = create_method(
        method, backbone=backbone, preset=preset, device=device, **(method_options or {})
    )
    detector.fit(normal_items, category=category, **(fit_options or {}))
    fit_seconds = time.perf_counter() - started
    detector = _rebuilt(detector)
    inspector = Inspector(detector)
    notes: list[str] = []

    calibration_items, calibration_source = val_normal_items, "normal validation images"
    if not calibration_items and normal_items:
        calibration_items, calibration_source = normal_items, "normal reference images"
        if not zero_shot:
            notes.append(
                "Maps were calibrated on the reference images the method was fitted on; "
                "their maps are lower than those of new normal images. Pass normal "
                "validation images for an unbiased range."
            )
    normal_scores = None
    if calibration_items:
        scores, maps = inspector._scores_and_maps(calibration_items, batch_size)
        inspector.calibration = calibrate(
            maps, scores, source=f"{calibration_source} ({len(calibration_items)})"
        )
        normal_scores = scores
    else:
        notes.append(
            "No normal images: heatmaps use the method's nominal range [0, 1]. Pass normal "
            "images to calibrate them."
        )

    if threshold is not None:
        inspector.set_threshold(threshold)
    elif fpr is not None:
        assert normal_scores is not None
        inspector.threshold = threshold_at_fpr(
            normal_scores, fpr, source=f"{calibration_source} ({len(calibration_items)})"
        )
    elif f1:
        assert normal_scores is not None
        anomalous_scores, _ = inspector._scores_and_maps(val_anomalous_items, batch_size)
        labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))]
        inspector.threshold = threshold_f1(
            labels,
            np.r_[normal_scores, anomalous_scores],
            source=(
                f"labelled validation images ({len(val_normal_items)} normal, "
                f"{len(val_anomalous_items)} anomalous)"
            ),
        )
    if inspector.threshold is not None and "note" in inspector.threshold.stats:
        notes.append(inspector.threshold.stats["note"])
    for note in notes:
        say(note)
    inspector.provenance = {
        "category": category,
        "normal_images": [_describe_input(i) for i in normal_items],
        "val_normal_images": len(val_normal_items),
        "val_anomalous_images": len(val_anomalous_items),
        "fit_seconds": round(fit_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "notes": notes,
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if out is not None:
        inspector.save(out)
    return inspector
