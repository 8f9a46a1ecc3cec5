"""A seeded generator of small anomaly-detection datasets, for tests and demos.

It writes procedural textures (gratings plus noise) and simple objects (a coloured
disc with a hub on a plain background) in the MVTec AD layout or the VisA CSV layout,
with six defect kinds that each come with a pixel mask: scratch, crack, hole, stain,
missing part and colour change. Everything derives from ``seed`` (same seed, same
bytes), nothing depends on method code, and the dataset is written to a temporary folder
and renamed into place, so an interrupted run leaves no half-written dataset.
"""

from __future__ import annotations

import csv
import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from anomalign.data.categories import is_texture
from anomalign.errors import ConfigError, DataError

DEFECT_TYPES: tuple[str, ...] = (
    "scratch",
    "crack",
    "hole",
    "stain",
    "missing_part",
    "colour_change",
)
DEFAULT_CATEGORIES: tuple[str, ...] = ("synth_texture", "synth_object")
LAYOUTS: tuple[str, ...] = ("mvtec", "visa")

Defect = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _rng(seed: int, category: str, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(category.encode()), *parts])


def _ellipse_mask(height: int, width: int, box: Sequence[float]) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).ellipse([float(v) for v in box], fill=255)
    return np.asarray(canvas) > 0


def _line_mask(
    height: int, width: int, points: list[tuple[float, float]], thick: int
) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).line(points, fill=255, width=thick, joint="curve")
    return np.asarray(canvas) > 0


class _Style:
    """Per-category appearance, drawn once from the seed."""

    def __init__(self, seed: int, category: str) -> None:
        rng = _rng(seed, category)
        self.texture = is_texture(category)
        self.base = rng.uniform(0.25, 0.75, size=3)
        self.accent = rng.uniform(0.1, 0.9, size=3)
        self.background = rng.uniform(0.05, 0.3, size=3)
        self.frequencies = rng.uniform(2.0, 9.0, size=(3, 2)) * rng.choice([-1, 1], size=(3, 2))


def _normal_image(
    style: _Style, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A defect-free image and the mask of where defects may go (the object, or everywhere)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    noise = rng.normal(0.0, 0.03, size=(height, width, 1))
    if style.texture:
        pattern = sum(
            np.sin(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 2 * np.pi))
            for fy, fx in style.frequencies
        )
        rgb = style.base + 0.08 * pattern[..., None] * (style.accent - 0.5) * 2 + noise
        return np.clip(rgb, 0, 1), np.ones((height, width), dtype=bool)
    rgb = np.broadcast_to(style.background, (height, width, 3)) + noise
    cy = height / 2 + rng.uniform(-0.04, 0.04) * height
    cx = width / 2 + rng.uniform(-0.04, 0.04) * width
    radius = 0.34 * min(height, width)
    body = _ellipse_mask(height, width, (cx - radius, cy - radius, cx + radius, cy + radius))
    hub_r = radius * 0.35
    hub = _ellipse_mask(height, width, (cx - hub_r, cy - hub_r, cx + hub_r, cy + hub_r))
    shade = 1.0 - 0.25 * np.hypot(y * max(height, width) - cy, x * max(height, width) - cx) / radius
    rgb = np.where(body[..., None], style.base * shade[..., None] + noise, rgb)
    rgb = np.where(hub[..., None], style.accent + noise, rgb)
    return np.clip(rgb, 0, 1), body


def _point_in(region: np.ndarray, rng: np.random.Generator, margin: float) -> tuple[float, float]:
    height, width = region.shape
    inner = region.copy()
    m = int(margin * min(height, width))
    inner[:m], inner[height - m :], inner[:, :m], inner[:, width - m :] = False, False, False, False
    ys, xs = np.nonzero(inner if inner.any() else region)
    index = rng.integers(len(ys))
    return float(ys[index]), float(xs[index])


def _scratch(rgb, region, bg, rng):
    h, w = region.shape
    cy, cx = _point_in(region, rng, 0.2)
    angle, length = rng.uniform(0, np.pi), rng.uniform(0.25, 0.45) * min(h, w)
    dy, dx = np.sin(angle) * length / 2, np.cos(angle) * length / 2
    mask = _line_mask(h, w, [(cx - dx, cy - dy), (cx + dx, cy + dy)], max(1, min(h, w) // 48))
    rgb[mask] = 0.92
    return mask


def _crack(rgb, region, bg, rng):
    h, w = region.shape
    y, x = _point_in(region, rng, 0.2)
    points, angle, step = [(x, y)], rng.uniform(0, 2 * np.pi), min(h, w) / 14
    for _ in range(6):
        angle += rng.uniform(-0.9, 0.9)
        x, y = x + step * np.cos(angle), y + step * np.sin(angle)
        points.append((x, y))
    mask = _line_mask(h, w, points, max(1, min(h, w) // 64))
    rgb[mask] = 0.04
    return mask


def _hole(rgb, region, bg, rng):
    h, w = region.shape
    cy, cx = _point_in(region, rng, 0.2)
    ry, rx = rng.uniform(0.05, 0.09, size=2) * min(h, w)
    mask = _ellipse_mask(h, w, (cx - rx, cy - ry, cx + rx, cy + ry))
    rgb[mask] = 0.02
    return mask


def _stain(rgb, region, bg, rng):
    h, w = region.shape
    cy, cx = _point_in(region, rng, 0.2)
    sy, sx = rng.uniform(0.05, 0.1, size=2) * min(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
    colour = np.array([0.45, 0.3, 0.1])
    alpha = np.where(alpha > 0.3, 0.75 * alpha, 0.0)
    rgb[:] = rgb * (1 - alpha[..., None]) + colour * alpha[..., None]
    return alpha > 0


def _missing_part(rgb, region, bg, rng):
    h, w = region.shape
    cy, cx = _point_in(region, rng, 0.1)
    r = rng.uniform(0.12, 0.18) * min(h, w)
    mask = _ellipse_mask(h, w, (cx - r, cy - r, cx + r, cy + r)) & region
    rgb[mask] = bg if not region.all() else rgb[region].mean(axis=0)
    return mask


def _colour_change(rgb, region, bg, rng):
    h, w = region.shape
    cy, cx = _point_in(region, rng, 0.15)
    ry, rx = rng.uniform(0.08, 0.14, size=2) * min(h, w)
    mask = _ellipse_mask(h, w, (cx - rx, cy - ry, cx + rx, cy + ry)) & region
    tint = np.array([0.9, 0.1, 0.6])[rng.permutation(3)]
    rgb[mask] = 0.35 * rgb[mask] + 0.65 * tint
    return mask


_DEFECTS: dict[str, Defect] = {
    "scratch": _scratch,
    "crack": _crack,
    "hole": _hole,
    "stain": _stain,
    "missing_part": _missing_part,
    "colour_change": _colour_change,
}


def _defective_image(
    style: _Style, height: int, width: int, defect: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    rgb, region = _normal_image(style, height, width, rng)
    rgb = rgb.copy()
    mask = _DEFECTS[defect](rgb, region, style.background, rng)
    if mask.sum() < 4:  # tiny images: make sure the defect is visible and masked
        mask[height // 2 - 1 : height // 2 + 1, width // 2 - 1 : width // 2 + 1] = True
        rgb[mask] = 0.0
    return np.clip(rgb, 0, 1), mask


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.rint(rgb * 255).astype(np.uint8)


def _save(array: np.ndarray, path: Path, **params: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **params)


def _write_category(
    tmp: Path,
    layout: str,
    category: str,
    seed: int,
    size: int,
    counts: tuple[int, int, int],
    defects: Sequence[str],
) -> list[list[str]]:
    style = _Style(seed, category)
    height, width = (size, size) if layout == "mvtec" else (size, (size * 3) // 2)
    n_train, n_good, n_defect = counts
    rows: list[list[str]] = []
    normals = [
        _normal_image(style, height, width, _rng(seed, category, 1, i))[0]
        for i in range(n_train + n_good)
    ]
    anomalies = [
        (
            defects[i % len(defects)],
            *_defective_image(
                style, height, width, defects[i % len(defects)], _rng(seed, category, 2, i)
            ),
        )
        for i in range(n_defect)
    ]
    if layout == "mvtec":
        base = tmp / category
        for i, rgb in enumerate(normals):
            split, index = ("train", i) if i < n_train else ("test", i - n_train)
            _save(_to_uint8(rgb), base / split / "good" / f"{index:03d}.png")
        per_type: dict[str, int] = {}
        for defect, rgb, mask in anomalies:
            index = per_type[defect] = per_type.get(defect, -1) + 1
            _save(_to_uint8(rgb), base / "test" / defect / f"{index:03d}.png")
            _save(
                mask.astype(np.uint8) * 255,
                base / "ground_truth" / defect / f"{index:03d}_mask.png",
            )
        return rows
    for i, rgb in enumerate(normals):
        name = f"{category}/Data/Images/Normal/{i:04d}.JPG"
        _save(_to_uint8(rgb), tmp / name, format="JPEG", quality=95)
        rows.append([category, "train" if i < n_train else "test", "normal", name, ""])
    for i, (defect, rgb, mask) in enumerate(anomalies):
        name = f"{category}/Data/Images/Anomaly/{i:03d}.JPG"
        mask_name = f"{category}/Data/Masks/Anomaly/{i:03d}.png"
        _save(_to_uint8(rgb), tmp / name, format="JPEG", quality=95)
        _save(mask.astype(np.uint8) * (DEFECT_TYPES.index(defect) + 1), tmp / mask_name)
        rows.append([category, "test", "anomaly", name, mask_name])
    return rows


def generate_synthetic_dataset(
    root: str | Path,
    layout: str = "mvtec",
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    seed: int = 0,
    image_size: int = 128,
    n_train: int = 8,
    n_test_good: int = 4,
    n_test_defect: int = 6,
    defect_types: Sequence[str] = DEFECT_TYPES,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic dataset at ``root`` and return ``root``.

    Categories whose name contains ``texture`` get textures, the others objects. In the
    VisA layout images are 1.5:1 (``image_size`` high), JPEG with upper-case ``.JPG``,
    masks hold the defect id (1..6, binarised with ``!= 0`` on load) and the split is in
    ``split_csv/1cls.csv``. Defect kinds cycle through ``defect_types``.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"Unknown synthetic layout '{layout}'; expected one of {LAYOUTS}.")
    unknown = [d for d in defect_types if d not in _DEFECTS]
    if unknown or not defect_types:
        raise ConfigError(f"Unknown defect type(s) {unknown}; expected some of {DEFECT_TYPES}.")
    if not categories or len(set(categories)) != len(categories):
        raise ConfigError(f"Categories must be a non-empty list of distinct names: {categories}.")
    if image_size < 16 or min(n_train, n_test_good, n_test_defect) < 0:
        raise ConfigError("image_size must be >= 16 and the image counts >= 0.")
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())) and not overwrite:
        raise DataError(f"'{root}' already exists and is not empty; pass overwrite to replace it.")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        rows: list[list[str]] = []
        for category in categories:
            rows += _write_category(
                tmp,
                layout,
                category,
                seed,
                image_size,
                (n_train, n_test_good, n_test_defect),
                defect_types,
            )
        if layout == "visa":
            (tmp / "split_csv").mkdir()
            with (tmp / "split_csv" / "1cls.csv").open("w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(["object", "split", "label", "image", "mask"])
                writer.writerows(rows)
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        if root.exists():
            root.rename(old)
        tmp.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
