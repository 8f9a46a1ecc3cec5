"""``anomalign export --format openvino``: the ONNX graph converted with OpenVINO.

The model is converted from the checked ONNX graph (``openvino.convert_model``) and saved
as ``.xml`` + ``.bin`` with float32 weights (float16 only with ``--fp16``); the same
``anomalign.*`` metadata goes into the model's ``rt_info`` under ``anomalign``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from anomalign.errors import ConfigError
from anomalign.export.metadata import ExportMetadata

RT_INFO_KEY = "anomalign"


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as error:
        raise ConfigError(
            "--format openvino needs the openvino package (pip install 'anomalign[openvino]')."
        ) from error
    return openvino


def save_openvino(model: Any, metadata: ExportMetadata, out: Path) -> int:
    """Convert the ONNX ``ModelProto`` to OpenVINO IR at ``out`` (.xml); return total bytes."""
    ov = import_openvino()
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(model.SerializeToString())
        converted = ov.convert_model(tmp)
    finally:
        os.unlink(tmp)
    for key, value in metadata.to_props().items():
        converted.set_rt_info(value, [RT_INFO_KEY, key])
    fp16 = bool(metadata.provenance.get("fp16"))
    ov.save_model(converted, str(out), compress_to_fp16=fp16)
    return out.stat().st_size + out.with_suffix(".bin").stat().st_size
