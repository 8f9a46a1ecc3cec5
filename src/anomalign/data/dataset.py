"""A loaded dataset: the samples of one root plus the helpers that slice and count them."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anomalign.data.fewshot import sample_shots
from anomalign.data.layouts import detect_layout, get_layout
from anomalign.data.sample import Sample, Split
from anomalign.errors import ConfigError, DataError


@dataclass(frozen=True)
class SummaryRow:
    """Counts for one (category, split, label, defect type) group."""

    category: str
    split: str
    label: int
    defect_type: str
    images: int
    with_mask: int


@dataclass(frozen=True)
class Dataset:
    """Samples read from ``root`` in ``layout``; slicing returns new datasets."""

    root: Path | None
    layout: str
    samples: tuple[Sample, ...]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    @property
    def categories(self) -> list[str]:
        """Categories in order of first appearance."""
        return list(dict.fromkeys(s.category for s in self.samples))

    def filter(
        self,
        *,
        category: str | None = None,
        split: Split | None = None,
        label: int | None = None,
    ) -> Dataset:
        """The samples matching every given field."""
        kept = tuple(
            s
            for s in self.samples
            if (category is None or s.category == category)
            and (split is None or s.split == split)
            and (label is None or s.label == label)
        )
        return Dataset(self.root, self.layout, kept)

    def by_category(self, category: str) -> Dataset:
        """The samples of one category; raises for a category the dataset lacks."""
        if category not in self.categories:
            raise DataError(
                f"Unknown category '{category}' in the {self.layout} dataset at '{self.root}'; "
                f"expected one of: {', '.join(self.categories)}."
            )
        return self.filter(category=category)

    def split_by_category(self) -> dict[str, Dataset]:
        """``category -> dataset`` for every category (metrics are computed per category)."""
        return {name: self.filter(category=name) for name in self.categories}

    @property
    def train(self) -> Dataset:
        """Training samples (normal images only in every standard benchmark)."""
        return self.filter(split="train")

    @property
    def test(self) -> Dataset:
        """Test samples."""
        return self.filter(split="test")

    @property
    def has_masks(self) -> bool:
        """True when every anomalous sample has pixel ground truth."""
        return all(s.mask_paths for s in self.samples if s.label == 1)

    def shots(self, category: str, k: int, seed: int = 0) -> list[Sample]:
        """``k`` reference images from the normal training images of ``category``."""
        normals = self.by_category(category).filter(split="train", label=0)
        if not len(normals):
            raise DataError(
                f"Category '{category}' of '{self.root}' has no normal training images to draw "
                "reference shots from."
            )
        return sample_shots(list(normals), k, seed)

    def summary(self) -> list[SummaryRow]:
        """Image and mask counts per category, split, label and defect type."""
        images: Counter[tuple[str, str, int, str]] = Counter()
        masks: Counter[tuple[str, str, int, str]] = Counter()
        for s in self.samples:
            key = (s.category, s.split, s.label, s.defect_type)
            images[key] += 1
            masks[key] += bool(s.mask_paths)
        order = {name: i for i, name in enumerate(self.categories)}
        split_order = {"train": 0, "validation": 1, "test": 2}
        keys = sorted(images, key=lambda k: (order[k[0]], split_order[k[1]], k[2], k[3]))
        return [SummaryRow(*key, images[key], masks[key]) for key in keys]


def _check_options(layout: str, options: dict[str, Any]) -> None:
    accepted = set(inspect.signature(get_layout(layout).load).parameters) - {"root", "categories"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"Option(s) {', '.join(unknown)} do not apply to the {layout} layout; it accepts: "
            f"{', '.join(sorted(accepted)) or 'none'}."
        )


#: Layouts that read an installed package when given no root.
PACKAGED_LAYOUTS: tuple[str, ...] = ("elpv", "conformal-textile")


def load_dataset(
    root: str | Path | None,
    layout: str = "auto",
    categories: str | Iterable[str] | None = None,
    split: Split | None = None,
    **options: Any,
) -> Dataset:
    """Read the dataset at ``root`` (layout detected unless given) into a :class:`Dataset`.

    ``options`` go to the layout's reader (e.g. ``views=["C1"]`` for Real-IAD,
    ``threshold=0.5`` for ELPV). ``root`` may be None only for the layouts whose data
    installs as a package (:data:`PACKAGED_LAYOUTS`: ELPV's ``elpv-dataset``, the textiles'
    ``conformal-clip-data``), which then read the installed package.
    """
    if root is None:
        if layout not in PACKAGED_LAYOUTS:
            raise ConfigError(
                "A dataset root is required (only the "
                f"{' and '.join(PACKAGED_LAYOUTS)} layouts have a default)."
            )
        path = None
    else:
        path = Path(root)
        if not path.exists():
            raise DataError(f"Dataset root '{path}' does not exist; expected a folder.")
    name = detect_layout(path) if layout == "auto" and path is not None else layout
    if name == "auto":
        raise ConfigError("Layout 'auto' needs a dataset root to inspect.")
    _check_options(name, options)
    chosen = [categories] if isinstance(categories, str) else categories
    samples = get_layout(name).load(path, chosen, **options)
    dataset = Dataset(path, name, tuple(samples))
    return dataset.filter(split=split) if split is not None else dataset
