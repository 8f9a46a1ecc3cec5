"""``OnnxDetector``: predict with an exported model on onnxruntime, without torch.

The model file says how to preprocess (:mod:`anomalign.export.metadata`); this module
reproduces the PyTorch detectors' preprocessing in numpy and Pillow with the same
functions they use (:func:`anomalign.data.images.load_rgb`, the squash resize of
:func:`anomalign.data.transforms.resize_rgb`), then ``(x / 255 - mean) / std`` in
float32 in the same order as :class:`anomalign.backbones.preprocess.ImagePreprocessor`,
so both paths feed the graph the same tensor. Maps are resized with
:func:`anomalign.data.transforms.resize_map`, whose numpy path follows
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``.

Nothing here imports torch: ``pip install --no-deps anomalign`` plus the packages of the
``anomalign[onnx]`` extra (onnxruntime, numpy, Pillow, scipy, pydantic) is enough to predict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anomalign.calibration import Calibration
from anomalign.data.images import ImageInput, load_rgb
from anomalign.data.transforms import resize_linear_cv2, resize_map, resize_rgb
from anomalign.errors import ConfigError, DataError
from anomalign.export.metadata import INPUT_NAME, ExportMetadata, Preprocessing
from anomalign.methods.base import Detector
from anomalign.results import Prediction
from anomalign.thresholds import Threshold

if TYPE_CHECKING:
    from anomalign.bundles import DetectorBundle, TensorSpec

ONNX_SUFFIX = ".onnx"


def _as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def normalize(rgb: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """``(H, W, 3)`` uint8 (already sized) -> ``(3, H, W)`` float32, ``(x / 255 - mean) / std``."""
    tensor = np.ascontiguousarray(rgb, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32)
    tensor = tensor / np.float32(255.0)
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(pre.std, dtype=np.float32).reshape(3, 1, 1)
    return (tensor - mean) / std


def preprocess(images: Sequence[ImageInput], pre: Preprocessing) -> np.ndarray:
    """Decode, (cv2 pre-resize, BGR if asked), squash-resize and normalise -> ``(B, 3, H, W)``
    float32, in the order the methods do."""
    batch = []
    for item in images:
        if pre.pre_resize:
            rgb = resize_linear_cv2(load_rgb(item), pre.pre_resize)
        else:
            rgb = load_rgb(item, max_side=pre.decode_max_side)
        if pre.channel_order == "bgr":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        batch.append(normalize(resize_rgb(rgb, pre.image_size, pre.interpolation), pre))
    return np.stack(batch)


def available_providers(device: str = "cpu") -> list[str]:
    """onnxruntime execution providers for ``device``: CUDA first when asked and present."""
    import onnxruntime as ort

    present = ort.get_available_providers()
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in present:
            raise ConfigError(
                "device 'cuda' needs onnxruntime's CUDAExecutionProvider (pip install "
                f"onnxruntime-gpu); this onnxruntime has {', '.join(present)}."
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxSession:
    """An exported model on onnxruntime: ``run(pixels (B, 3, H, W)) -> (score, map)``."""

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = available_providers(device)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=providers
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            message = str(error).strip().splitlines()[0] if str(error).strip() else error
            raise DataError(f"onnxruntime cannot load '{path}': {message}") from error
        self.props: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.providers: list[str] = list(self.session.get_providers())

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score, amap = self.session.run(None, {INPUT_NAME: pixels})
        return np.asarray(score, np.float32), np.asarray(amap, np.float32)


def open_session(path: Path, device: str = "cpu", threads: int | None = None) -> OnnxSession:
    """A runtime session for ``path`` (``.onnx``: onnxruntime; ``.xml``: OpenVINO)."""
    if not path.is_file():
        raise DataError(f"Exported model '{path}' does not exist.")
    if path.suffix == ".xml":
        from anomalign.export.openvino_runtime import OpenVinoSession

        return OpenVinoSession(path, device)  # type: ignore[return-value]
    return OnnxSession(path, device, threads)


class OnnxDetector(Detector):
    """A detector exported by ``anomalign export``, run on onnxruntime (or OpenVINO).

    Same interface as every :class:`~anomalign.Detector`: ``predict`` takes paths,
    folders, PIL images and arrays and returns a :class:`~anomalign.Prediction` with the
    exported threshold's decisions and the exported calibration; ``calibrate`` and the
    threshold setters work on the exported model's own scores. It is already fitted:
    ``fit`` and ``to_bundle`` refuse (re-fit the bundle in PyTorch and export again).

    Args:
        path: the ``.onnx`` file (or an OpenVINO ``.xml``).
        device: "cpu", or "cuda" for onnxruntime's CUDA execution provider.
        threads: intra-op threads (default: onnxruntime's).
    """

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.device = device
        self.session = open_session(self.path, device, threads)
        self.metadata = ExportMetadata.from_props(self.session.props, f"'{self.path}'")
        self.name = self.metadata.method
        self.threshold = Threshold.from_dict(self.metadata.threshold)
        self.calibration = Calibration.from_dict(self.metadata.calibration)
        detector = self.metadata.provenance.get("detector") or {}
        self.fit_record = dict(detector.get("fit") or {})

    @property
    def preprocessing(self) -> Preprocessing:
        return self.metadata.preprocessing

    # -- the Detector hooks ------------------------------------------------------------

    def _fit(self, images: list[ImageInput], *, category: str | None, **inputs: Any) -> None:
        raise ConfigError(
            f"'{self.path.name}' is an exported, already fitted model: fit the bundle with "
            "PyTorch and export it again."
        )

    def _predict(
        self,
        images: list[ImageInput],
        *,
        category: str | None,
        output_size: int | tuple[int, int] | None,
        batch_size: int,
        **inputs: Any,
    ) -> Prediction:
        if inputs:
            raise ConfigError(f"An exported model takes no extra inputs, got {sorted(inputs)}.")
        fitted = self.metadata.provenance.get("category")
        if category is not None and fitted is not None and category != fitted:
            raise ConfigError(
                f"'{self.path.name}' was exported for category '{fitted}', not '{category}'."
            )
        step = self.metadata.batch or batch_size
        scores, maps = [], []
        for start in range(0, len(images), step):
            pixels = preprocess(images[start : start + step], self.preprocessing)
            score, amap = self.session.run(pixels)
            scores.append(score)
            maps.append(amap)
        map_array = np.concatenate(maps)
        if output_size is not None:
            map_array = resize_map(map_array, output_size)
        return Prediction(np.concatenate(scores), map_array, self._describe())

    def _describe(self) -> dict[str, Any]:
        detector = dict(self.metadata.provenance.get("detector") or {})
        for key in ("bundle", "threshold", "calibration", "fit"):
            detector.pop(key, None)
        return {
            **detector,
            "runtime": type(self.session).__name__,
            "providers": getattr(self.session, "providers", []),
            "exported": {
                k: self.metadata.provenance.get(k)
                for k in ("bundle", "bundle_sha256", "exporter", "opset", "fp16", "exported_at")
            },
            "image_score": self.metadata.outputs.get("image_score"),
            "category": self.metadata.provenance.get("category"),
        }

    def _bundle(self) -> DetectorBundle:
        raise ConfigError(
            f"'{self.path.name}' is an exported model; it cannot be turned back into a "
            "bundle (use the .anomalign file it was exported from)."
        )

    @classmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> OnnxDetector:
        raise ConfigError("OnnxDetector opens exported .onnx files, not bundles.")

    @classmethod
    def _bundle_tensors(cls, bundle: DetectorBundle) -> dict[str, TensorSpec]:
        raise ConfigError("OnnxDetector opens exported .onnx files, not bundles.")

    # -- what the base class would do through a bundle ----------------------------------

    def clone(self, *, fitted: bool = False) -> OnnxDetector:
        """A new session on the same file, with this detector's threshold and calibration."""
        clone = OnnxDetector(self.path, device=self.device)
        clone.threshold, clone.calibration = self.threshold, self.calibration
        return clone

    def fingerprint(self) -> str:
        """SHA-256 of the model file plus the current threshold and calibration."""
        digest = hashlib.sha256(self.path.read_bytes())
        state = [
            None if self.threshold is None else self.threshold.to_dict(),
            self.calibration.to_dict(),
        ]
        digest.update(json.dumps(state, sort_keys=True, default=str).encode())
        return digest.hexdigest()


def open_exported(path: str | Path, *, device: str = "cpu", backbone: Any = None) -> OnnxDetector:
    """:func:`anomalign.load_detector` for ``.onnx`` / ``.xml`` files: the exported model
    as a detector (``backbone`` cannot be given: the weights are in the file)."""
    if backbone is not None:
        raise ConfigError("An exported model holds its own backbone; do not pass one.")
    return OnnxDetector(path, device=device)
