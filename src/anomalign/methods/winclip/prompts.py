"""WinCLIP's compositional prompt ensemble (Jeong et al. 2023, §3.1 and supplementary):
state words x template sentences, averaged per class (normal, anomalous)."""

from __future__ import annotations

NORMAL_STATES: tuple[str, ...] = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ANOMALOUS_STATES: tuple[str, ...] = (
    "damaged {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)
TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)


def prompt_ensemble(object_name: str) -> tuple[list[str], list[str]]:
    """Every normal and every anomalous sentence for ``object_name`` (states outer)."""

    def sentences(states: tuple[str, ...]) -> list[str]:
        return [t.format(s.format(object_name)) for s in states for t in TEMPLATES]

    return sentences(NORMAL_STATES), sentences(ANOMALOUS_STATES)
