"""Parts any method may use: the patch memory (exact and IVF nearest-neighbour search,
Euclidean k-NN, the greedy k-center coreset)
and anomaly-map post-processing (smoothing, upsampling)."""

from anomalign.components.memory import (
    ExactIndex,
    IVFIndex,
    NearestIndex,
    PatchMemory,
    greedy_coreset,
    l2_nearest,
    squared_l2,
)
from anomalign.components.postprocess import gaussian_smooth, mean_filter, upsample

__all__ = [
    "ExactIndex",
    "IVFIndex",
    "NearestIndex",
    "PatchMemory",
    "gaussian_smooth",
    "greedy_coreset",
    "l2_nearest",
    "mean_filter",
    "squared_l2",
    "upsample",
]
