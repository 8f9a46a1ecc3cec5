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
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np

from anomalign.bundles import DetectorBundle, TensorSpec, check_tensors, save_bundle
from anomalign.calibration import Calibration, calibrate
from anomalign.data.images import METHOD_DECODE_SIDE, ImageInput, load_rgb, path_text
from anomalign.data.inputs import expand_inputs
from anomalign.data.transforms import resize_map
from anomalign.errors import ConfigError, NonFiniteResultError
from anomalign.results import Prediction
from anomalign.thresholds import Threshold, manual_threshold, threshold_at_fpr, threshold_f1
from anomalign.viz.render import MAX_SIDE, fit_size

OutputSize = int | tuple[int, int] | Literal["image"] | None
#: Keys the base class adds to a bundle's ``extra``.
EXTRA_KEYS: tuple[str, ...] = ("threshold", "calibration", "fit_record")


def describe_input(item: ImageInput) -> str:
    """A path as text, or the type of an in-memory image (for provenance records)."""
    if isinstance(item, str | Path):
        return path_text(item)
    return f"<{type(item).__name__}>"


def gather_images(items: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """Images from paths, folders (expanded, sorted), PIL images and numpy arrays."""
    if not isinstance(items, list | tuple):
        items = [items]
    gathered: list[ImageInput] = []
    for item in items:
        if isinstance(item, str | Path):
            found = expand_inputs([item])
            if Path(item).is_dir():  # a folder's broken links are skipped, with a warning
                broken = [p for p in found if p.is_symlink() and not p.exists()]
                if broken:
                    names = ", ".join(path_text(p) for p in broken[:3])
                    warnings.warn(
                        f"Skipped {len(broken)} broken symbolic link(s) (missing target or a "
                        f"link loop) in '{path_text(item)}': {names}",
                        stacklevel=2,
                    )
                    found = [p for p in found if p not in broken]
            gathered += found
        else:
            gathered.append(item)
    return gathered


def _check_finite(prediction: Prediction, items: Sequence[ImageInput]) -> None:
    """Raise :class:`NonFiniteResultError` naming the images whose score or map holds NaN
    or infinity: such an image gets no verdict (NaN would compare as "normal")."""
    bad = [
        index
        for index in range(len(prediction))
        if not (np.isfinite(prediction.scores[index]) and np.isfinite(prediction.maps[index]).all())
    ]
    if bad:
        names = ", ".join(describe_input(items[i]) for i in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NonFiniteResultError(
            f"The detector gave a non-finite (NaN or infinite) score or map for {len(bad)} of "
            f"{len(prediction)} image(s): {names}{more}. Its bundle or options are broken; "
            "no decision was made."
        )


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

    @classmethod
    def _unfitted_from_bundle(
        cls, bundle: DetectorBundle, backbone: Any, device: str, **arguments: Any
    ) -> Self:
        """A new, unfitted detector with the bundle's preset and options (JSON lists back
        to tuples) plus ``arguments``, on ``backbone`` or the bundle's own; refuses a
        backbone other than the one the bundle was fitted with. For :meth:`_restore`."""
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in bundle.config.items()}
        options.update(arguments)
        detector = cls(backbone or bundle.backbone, device=device, **options)
        used = str(detector.backbone.spec)  # type: ignore[attr-defined]
        if used != bundle.backbone:
            raise ConfigError(
                f"The bundle was fitted with backbone '{bundle.backbone}', not '{used}'."
            )
        return detector

    @classmethod
    @abstractmethod
    def _bundle_tensors(cls, bundle: DetectorBundle) -> dict[str, TensorSpec]:
        """The tensors a bundle of this method must hold (names, shapes, dtypes), read
        from its manifest; :meth:`from_bundle` checks them before and after
        :meth:`_restore` (see :func:`anomalign.bundles.check_tensors`)."""

    def _bundle_dims(self) -> dict[str, int]:
        """Sizes of named tensor dimensions fixed by the restored detector (e.g. the
        backbone's embedding width ``D``); none by default."""
        return {}

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
        if isinstance(output_size, str) and not per_image:
            raise ConfigError(
                f"output_size must be an int, (h, w), 'image' or None, got {output_size!r}."
            )
        parts = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            if per_image:  # decoded one batch at a time, large files shrunk while decoding
                chunk = [load_rgb(item, max_side=METHOD_DECODE_SIDE) for item in chunk]
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
        _check_finite(prediction, items)
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
        """Rebuild a detector (state, threshold, calibration) from a bundle.

        The bundle's tensors are checked against :meth:`_bundle_tensors` first (names,
        shapes, dtypes), then again with the restored detector's :meth:`_bundle_dims`;
        every problem is one error line naming the bundle's file.
        """
        with bundle.naming_errors():
            expected = cls._bundle_tensors(bundle)
            check_tensors(bundle, expected)
            detector = cls._restore(bundle, backbone, device)
            check_tensors(bundle, expected, detector._bundle_dims())
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
