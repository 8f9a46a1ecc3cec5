"""``OnnxDetector``: predict with an exported model on onnxruntime, without torch.

The model file says how to preprocess (:mod:`anomalign.export.metadata`); this module
reproduces the PyTorch detectors' preprocessing in numpy and Pillow with the same
functions they use (:func:`anomalign.data.images.load_rgb`, the squash resize of
:func:`anomalign.data.transforms.resize_rgb`), then ``(x / 255 - mean) / std`` in
float32 in the same order as :class:`anomalign.backbones.preprocess.ImagePreprocessor`,
so both paths feed the graph the same tensor. Maps are resized with a numpy bilinear
resize that follows ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)``.

Nothing here imports torch: ``pip install anomalign[onnx]`` is enough to predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anomalign.data.images import ImageInput, load_rgb
from anomalign.data.transforms import resize_rgb
from anomalign.errors import ConfigError, DataError
from anomalign.export.metadata import INPUT_NAME, Preprocessing

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
    """Decode, (BGR if asked), squash-resize and normalise -> ``(B, 3, H, W)`` float32."""
    batch = []
    for item in images:
        rgb = load_rgb(item)
        if pre.channel_order == "bgr":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        batch.append(normalize(resize_rgb(rgb, pre.image_size, pre.interpolation), pre))
    return np.stack(batch)


def _linear_weights(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a half-pixel linear resize (PyTorch's rule)."""
    scale = np.float32(src) / np.float32(dst)
    pos = (np.arange(dst, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    pos = np.maximum(pos, np.float32(0.0))
    low = np.minimum(pos.astype(np.int64), src - 1)
    high = np.minimum(low + 1, src - 1)
    frac = (pos - low.astype(np.float32)).astype(np.float32)
    return low, high, frac


def resize_maps(maps: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(..., H, W)`` float maps to ``size`` (align_corners=False)."""
    height, width = _as_hw(size)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[-2:] == (height, width):
        return maps
    r0, r1, fr = _linear_weights(maps.shape[-2], height)
    c0, c1, fc = _linear_weights(maps.shape[-1], width)
    top, bottom = maps[..., r0, :], maps[..., r1, :]
    fr = fr[:, None]
    one = np.float32(1.0)
    rows_top = top[..., c0] * (one - fc) + top[..., c1] * fc
    rows_bottom = bottom[..., c0] * (one - fc) + bottom[..., c1] * fc
    return (rows_top * (one - fr) + rows_bottom * fr).astype(np.float32)


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
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=available_providers(device)
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
