"""Helpers for benchmark tests: a tiny few-shot method and small synthetic settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from anomalign.backbones import Backbone, as_backbone
from anomalign.bundles import DetectorBundle, TensorSpec
from anomalign.data.images import load_rgb
from anomalign.data.transforms import resize_map, resize_rgb
from anomalign.evaluation import SyntheticOptions
from anomalign.methods import Detector, register_method
from anomalign.results import Prediction

FEWSHOT = "test-mean-diff"


@register_method(FEWSHOT, learning="few-shot", eval_size=32, needs_text=False, replace=True)
class MeanDifference(Detector):
    """Few-shot stand-in: the map is |image - mean of the reference images| (grey, 32 px).

    Registered with learning="few-shot" and its own protocol size, so the runner reads
    them from its spec, and its numbers depend on which reference images a seed picks.
    """

    name = FEWSHOT

    def __init__(self, backbone: Backbone, ignore_output_size: bool = False, **_: Any) -> None:
        super().__init__()
        self.backbone, self.ignore_output_size = backbone, ignore_output_size
        self.reference: np.ndarray | None = None

    def get_params(self) -> dict[str, Any]:
        return {"ignore_output_size": self.ignore_output_size}

    @staticmethod
    def _grey(image: Any) -> np.ndarray:
        return resize_rgb(load_rgb(image), 32).astype(np.float32).mean(axis=-1) / 255.0

    def _fit(self, images: list[Any], *, category: str | None, **kw: Any) -> None:
        self.reference = np.mean([self._grey(i) for i in images], axis=0)

    def _predict(
        self, images: list[Any], *, category: Any, output_size: Any, batch_size: int
    ) -> Prediction:
        assert self.reference is not None
        maps = np.stack([np.abs(self._grey(i) - self.reference) for i in images])
        if output_size is not None and not self.ignore_output_size:
            maps = resize_map(maps, output_size)
        return Prediction(maps.reshape(len(maps), -1).max(axis=1), maps, self._describe())

    def _describe(self) -> dict[str, Any]:
        return {"method": self.name, "options": self.get_params(), **self.backbone.describe()}

    def _bundle(self) -> DetectorBundle:
        assert self.reference is not None
        return DetectorBundle(
            self.name,
            str(self.backbone.spec),
            self.get_params(),
            {"reference": torch.from_numpy(self.reference)},
        )

    @classmethod
    def _bundle_tensors(cls, bundle: DetectorBundle) -> dict[str, TensorSpec]:
        return {"reference": TensorSpec((32, 32))}

    @classmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> MeanDifference:
        detector = cls(as_backbone(backbone or bundle.backbone, device), **bundle.config)
        detector.reference = bundle.tensors["reference"].numpy()
        return detector


SMALL = SyntheticOptions(image_size=64, n_train=4, n_test_good=3, n_test_defect=3)
