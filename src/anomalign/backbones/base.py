"""The image-encoder seam every method sees, whatever the backbone family.

A :class:`Backbone` turns normalised pixels into tokens (:meth:`Backbone.encode`): a
global embedding, per-block patch tokens and, for CLIP families, the V-V local tokens in
the joint image-text space (anoclip.md §2); it also names its preprocessing and, when it
has one, its text tower. Families register by spec prefix (:mod:`.loading`): open_clip
CLIP models (dual-path V-V, text tower) and timm image models (no text tower), so a
memory method runs on either. Nothing outside ``backbones/`` touches a family's model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from anomalign.backbones.preprocess import ImagePreprocessor
from anomalign.backbones.spec import BackboneSpec

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
#: Seed of random initialisation (``ARCH:random``), so untrained runs are repeatable.
RANDOM_INIT_SEED = 0


class UntrainedBackboneWarning(UserWarning):
    """Emitted when a backbone has random weights: its outputs mean nothing."""


def warn_untrained(spec: BackboneSpec) -> None:
    """The one warning every family gives for random weights (``ARCH:random``)."""
    import warnings

    warnings.warn(
        f"Backbone '{spec}' has random weights: results are for pipeline checks only and "
        "are flagged 'untrained_backbone'.",
        UntrainedBackboneWarning,
        stacklevel=4,
    )


def checked_weights_file(spec: BackboneSpec, how_to_provide: str) -> Path:
    """The local weights file of an ``ARCH:/path`` spec; one-line errors when it is missing
    or is not a checkpoint file (``how_to_provide`` says how to give one)."""
    from anomalign.backbones.spec import CHECKPOINT_SUFFIXES
    from anomalign.errors import ConfigError, WeightsUnavailableError

    path = Path(spec.value)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"Backbone '{spec}': weights file '{path}' does not exist.\n" + how_to_provide
        )
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ConfigError(
            f"Backbone '{spec}': '{path.name}' is not a checkpoint; expected one of "
            f"{', '.join(CHECKPOINT_SUFFIXES)}."
        )
    return path


@dataclass
class ImageTokens:
    """What one forward pass returns (all unnormalised).

    Attributes:
        global_token: ``(B, D)`` the image embedding (CLIP: CLS after ``ln_post`` and
            ``proj``, equal to ``encode_image``; timm: the pooled pre-logits features).
        local_tokens: ``(B, N, D)`` V-V patch tokens in the joint space (CLIP families),
            or None for families without a text space.
        intermediates: block number (1-based) -> ``(B, N_b, W_b)`` patch tokens at that
            block's output, unprojected.
        grid_size: ``(rows, cols)`` of the local tokens' patch grid (``N = rows * cols``).
        intermediate_grids: block number -> ``(rows, cols)`` of that block's tokens
            (CNN stages differ in resolution; ViT blocks all equal ``grid_size``).
    """

    global_token: torch.Tensor
    local_tokens: torch.Tensor | None
    intermediates: dict[int, torch.Tensor] = field(default_factory=dict)
    grid_size: tuple[int, int] = (0, 0)
    intermediate_grids: dict[int, tuple[int, int]] = field(default_factory=dict)


class Backbone(ABC):
    """A frozen image encoder with its preprocessing, provenance and optional text tower.

    ``untrained`` is True for random weights; every result built on such a backbone must
    carry that flag (:meth:`describe` includes it).
    """

    family: ClassVar[str] = ""
    spec: BackboneSpec
    preprocessor: ImagePreprocessor
    precision: str
    weights_path: str | None
    load_seconds: float

    @property
    def untrained(self) -> bool:
        return self.spec.untrained

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the weights live."""

    @property
    def image_size(self) -> tuple[int, int]:
        return self.preprocessor.image_size

    @property
    @abstractmethod
    def num_blocks(self) -> int:
        """How many blocks (ViT blocks, CNN stages) :meth:`encode` can tap, 1-based."""

    @property
    @abstractmethod
    def grid_size(self) -> tuple[int, int]:
        """Patch grid of the local tokens at the preprocessor's input size."""

    @property
    def text(self) -> Any:
        """The text encoder (:class:`~anomalign.backbones.text.TextEncoder`), or None."""
        return None

    @property
    def has_text(self) -> bool:
        return self.text is not None

    @property
    def logit_scale_param(self) -> float | None:
        """The model's stored (log-space) ``logit_scale`` parameter, or None without one."""
        return None

    @abstractmethod
    def encode(
        self,
        pixels: torch.Tensor,
        blocks: Iterable[int] = (),
        *,
        vv_depth: int | None = None,
        aliased: bool = False,
    ) -> ImageTokens:
        """Encode normalised pixels ``(B, 3, H, W)``; ``blocks`` are the 1-based block
        numbers whose patch tokens to return; ``vv_depth`` the V-V depth (CLIP only);
        ``aliased`` the official PromptAD hooks' in-place aliasing of block tokens (CLIP
        dual path only)."""

    @abstractmethod
    def encode_global(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image embedding ``(B, D)`` of normalised pixels (no patch tokens)."""

    def preprocess(self, images: Any) -> torch.Tensor:
        """Decode, squash-resize and normalise images onto the backbone's device."""
        return self.preprocessor(images).to(self.device)

    def warm_up(self) -> None:
        """One forward pass, so the first timed call excludes one-off start-up costs."""
        height, width = self.image_size
        with torch.no_grad():
            self.encode_global(torch.zeros(1, 3, height, width, device=self.device))

    def check_blocks(self, blocks: Iterable[int], what: str = "blocks") -> tuple[int, ...]:
        """Sorted unique 1-based block numbers; a :class:`ConfigError` names bad ones."""
        from anomalign.errors import ConfigError

        chosen = tuple(sorted({int(b) for b in blocks}))
        bad = [b for b in chosen if not 1 <= b <= self.num_blocks]
        if bad:
            raise ConfigError(
                f"{what} {bad} do not exist: backbone '{self.spec}' has blocks "
                f"1..{self.num_blocks}."
            )
        return chosen

    def describe(self) -> dict[str, Any]:
        """Provenance recorded in every result."""
        return {
            "backbone": str(self.spec),
            "backbone_family": self.family,
            "weights_path": self.weights_path,
            "untrained_backbone": self.untrained,
            "precision": self.precision,
            "image_size": list(self.image_size),
            "device": str(self.device),
        }
