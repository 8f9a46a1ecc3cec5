"""Input checks shared by the metric functions, and the metrics' error type."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomalign.errors import AnomalignError

try:  # torch is a runtime dependency, but the metrics work without it.
    import torch
except ImportError:  # pragma: no cover - exercised only without torch
    torch = None  # type: ignore[assignment]


class MetricError(AnomalignError, ValueError):
    """Scores or labels given to a metric are malformed (shape, values, non-finite scores)."""


def is_tensor(x: Any) -> bool:
    """True when ``x`` is a torch tensor (without importing torch when it is absent)."""
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array (tensors are detached and copied to the CPU)."""
    if is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_scores(scores: Any, name: str, dtype: Any = np.float32) -> Any:
    """Cast scores to ``dtype`` (numpy or torch, device kept) and reject nan/inf.

    Non-finite scores have no place in a ranking: sorting would put nan anywhere, so they are
    an error rather than something to skip silently.
    """
    if is_tensor(scores):
        tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
        out = scores.detach().to(tdtype)
        if not bool(torch.isfinite(out).all()):
            bad = int((~torch.isfinite(out)).sum())
            raise MetricError(f"{name} contain {bad} nan/inf value(s); scores must be finite")
        return out + 0.0  # +0.0 folds -0.0 into +0.0 so equal scores compare equal
    arr = np.asarray(scores)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise MetricError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(dtype, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        raise MetricError(
            f"{name} contain {int(arr.size - finite.sum())} nan/inf value(s); scores must be finite"
        )
    return arr + dtype(0.0)


def check_binary(labels: Any, name: str) -> np.ndarray:
    """Return ``labels`` as a bool numpy array; values must be boolean or 0/1."""
    arr = to_numpy(labels)
    if arr.dtype == np.bool_:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise MetricError(f"{name} must be boolean or 0/1, got dtype {arr.dtype}")
    ones = arr == 1
    if not np.logical_or(ones, arr == 0).all():
        vals = np.unique(arr)[:5]
        raise MetricError(
            f"{name} must be boolean or 0/1 (binarise masks first, e.g. mask > 0), "
            f"found values {vals.tolist()}"
        )
    return ones


def check_same_shape(maps_shape: tuple[int, ...], masks_shape: tuple[int, ...]) -> None:
    """Raise when anomaly maps and ground-truth masks differ in shape, naming both."""
    if tuple(maps_shape) != tuple(masks_shape):
        raise MetricError(
            f"anomaly maps have shape {tuple(maps_shape)} but masks have shape "
            f"{tuple(masks_shape)}; resize maps or masks to the evaluation resolution first"
        )
