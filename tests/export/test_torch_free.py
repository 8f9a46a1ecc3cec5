"""The prediction path of an exported model never imports torch.

The check runs in a fresh interpreter where importing torch (or open_clip, torchvision)
raises, and then also asserts that none of them is in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::anomalign.backbones.UntrainedBackboneWarning")
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = ("torch", "torchvision", "open_clip", "safetensors")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the ONNX path must not import it")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run_without_torch(body: str, *args: str) -> dict:
    """Run ``body`` (which prints one JSON line last) with torch imports blocked."""
    code = BLOCKER + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.pop("loaded") == [], "torch-family modules were imported"
    return result


LOADED = "sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)"


def test_the_blocker_blocks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER + "import torch"], capture_output=True, text=True
    )
    assert done.returncode != 0 and "is blocked" in done.stderr


def test_runtime_session_and_preprocessing_import_no_torch(
    anoclip_single, image_files: list[Path]
) -> None:
    body = f"""
    import json, sys
    from anomalign.export.metadata import ExportMetadata
    from anomalign.export.runtime import OnnxSession, preprocess
    session = OnnxSession(__import__("pathlib").Path(sys.argv[1]))
    meta = ExportMetadata.from_props(session.props)
    scores, maps = session.run(preprocess(sys.argv[2:], meta.preprocessing))
    print(json.dumps({{"scores": scores.tolist(), "loaded": {LOADED}}}))
    """
    result = run_without_torch(body, str(anoclip_single.model), *map(str, image_files))
    expected = anoclip_single.detector.predict(image_files).scores
    assert result["scores"] == pytest.approx(expected.tolist(), abs=1e-4)


def test_load_detector_and_predict_import_no_torch(finegrainedad, image_dir: Path) -> None:
    body = f"""
    import json, sys
    import anomalign
    detector = anomalign.load_detector(sys.argv[1])
    prediction = detector.predict(sys.argv[2], output_size="image")
    print(json.dumps({{
        "type": type(detector).__name__,
        "scores": prediction.scores.tolist(),
        "decisions": prediction.decisions.tolist(),
        "shapes": [list(m.shape) for m in prediction.maps],
        "loaded": {LOADED},
    }}))
    """
    result = run_without_torch(body, str(finegrainedad.model), str(image_dir))
    reference = finegrainedad.detector.predict(image_dir, output_size="image")
    assert result["type"] == "OnnxDetector"
    assert result["scores"] == pytest.approx(reference.scores.tolist(), abs=1e-4)
    assert result["decisions"] == reference.decisions.tolist()
    assert result["shapes"] == [list(m.shape) for m in reference.maps]


def test_predict_cli_on_an_onnx_model_imports_no_torch(
    anoclip_single, image_dir: Path, tmp_path: Path
) -> None:
    body = f"""
    import json, sys
    from anomalign.cli import main
    status = main(["predict", sys.argv[1], sys.argv[2], "--out", sys.argv[3]])
    print(json.dumps({{"status": status, "loaded": {LOADED}}}))
    """
    out = tmp_path / "out"
    result = run_without_torch(body, str(anoclip_single.model), str(image_dir), str(out))
    assert result["status"] == 0
    assert len(list((out / "maps").iterdir())) == 6
