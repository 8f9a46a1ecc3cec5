"""The interface every detector offers, so runners, bundles and the CLI treat methods alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from anomalign.bundles import DetectorBundle
from anomalign.data.images import ImageInput
from anomalign.results import Prediction


@runtime_checkable
class Detector(Protocol):
    """A fitted-or-zero-shot anomaly detector.

    ``fit`` takes the k normal reference images (zero-shot methods accept none and only
    record the category); ``predict`` returns a :class:`Prediction`; ``to_bundle`` and the
    class method ``from_bundle`` persist the fitted state without the training images.
    """

    name: str

    def fit(
        self, normal_images: Sequence[ImageInput] = (), category: str | None = None, **kwargs: Any
    ) -> Detector: ...

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        category: str | None = None,
        output_size: int | tuple[int, int] | None = None,
        batch_size: int = 8,
    ) -> Prediction: ...

    def describe(self) -> dict[str, Any]: ...

    def to_bundle(self) -> DetectorBundle: ...
