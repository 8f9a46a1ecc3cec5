"""An OpenVINO IR exported by ``anomalign export --format openvino``, on OpenVINO's CPU plugin.

Torch-free; same ``run(pixels) -> (score, map)`` and ``props`` as the onnxruntime session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomalign.errors import ConfigError, DataError
from anomalign.export.openvino_export import RT_INFO_KEY, import_openvino


class OpenVinoSession:
    """A compiled OpenVINO model: ``run(pixels (B, 3, H, W)) -> (score (B,), map (B, h, w))``."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        ov = import_openvino()
        if device != "cpu":
            raise ConfigError("OpenVINO models run on the CPU here (device='cpu').")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as error:  # OpenVINO raises its own untyped errors
            raise DataError(f"OpenVINO cannot read '{path}': {error}") from error
        self.props: dict[str, str] = {}
        if model.has_rt_info(RT_INFO_KEY):
            for key, value in model.get_rt_info()[RT_INFO_KEY].items():
                self.props[str(key)] = value.astype(str)
        # full float32: the CPU plugin may otherwise compute in bf16 where the CPU has it
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.providers = ["OpenVINO CPU"]

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = self.compiled(pixels)
        score, amap = (outputs[self.compiled.output(i)] for i in range(2))
        return np.asarray(score, np.float32), np.asarray(amap, np.float32)
