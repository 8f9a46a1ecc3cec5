"""Helpers for benchmark tests: a tiny few-shot method and small synthetic settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from anomalign.backbones import Backbone
from anomalign.bundles import DetectorBundle
from anomalign.data.images import load_rgb
from anomalign.data.transforms import resize_map, resize_rgb
from anomalign.evaluation import SyntheticOptions
from anomalign.methods import list_methods, register_method
from anomalign.results import Prediction

FEWSHOT = "test-mean-diff"


class MeanDifference:
    """Few-shot stand-in: the map is |image - mean of the reference images| (grey, 32 px).

    It declares ``uses_shots``/``zero_shot`` like any detector may, so the runner's protocol
    override is exercised, and its numbers depend on which reference images a seed picks.
    """

    name = FEWSHOT
    uses_shots = True
    zero_shot = False

    def __init__(self, backbone: Backbone, **options: Any) -> None:
        self.backbone, self.options = backbone, options
        self.reference: np.ndarray | None = None

    @staticmethod
    def _grey(image: Any) -> np.ndarray:
        return resize_rgb(load_rgb(image), 32).astype(np.float32).mean(axis=-1) / 255.0

    def fit(
        self, normal_images: Sequence[Any] = (), category: str | None = None, **kw: Any
    ) -> MeanDifference:
        self.reference = np.mean([self._grey(i) for i in normal_images], axis=0)
        return self

    def predict(
        self,
        images: Any,
        category: str | None = None,
        output_size: Any = None,
        batch_size: int = 8,
    ) -> Prediction:
        assert self.reference is not None
        maps = np.stack([np.abs(self._grey(i) - self.reference) for i in images])
        if output_size is not None and not self.options.get("ignore_output_size"):
            maps = resize_map(maps, output_size)
        return Prediction(maps.reshape(len(maps), -1).max(axis=1), maps, self.describe())

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "options": self.options, **self.backbone.describe()}

    def to_bundle(self) -> DetectorBundle:
        assert self.reference is not None
        return DetectorBundle(
            self.name,
            str(self.backbone.spec),
            dict(self.options),
            {"reference": torch.from_numpy(self.reference)},
        )

    @classmethod
    def from_bundle(
        cls, bundle: DetectorBundle, backbone: Backbone, device: str = "cpu"
    ) -> MeanDifference:
        detector = cls(backbone, **bundle.config)
        detector.reference = bundle.tensors["reference"].numpy()
        return detector


if FEWSHOT not in list_methods():
    register_method(FEWSHOT)(MeanDifference)


SMALL = SyntheticOptions(image_size=64, n_train=4, n_test_good=3, n_test_defect=3)
