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
