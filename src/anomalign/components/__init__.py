"""Parts any method may use: the patch memory (exact and IVF nearest-neighbour search)
and anomaly-map post-processing (smoothing, upsampling)."""

from anomalign.components.memory import ExactIndex, IVFIndex, NearestIndex, PatchMemory
from anomalign.components.postprocess import gaussian_smooth, mean_filter, upsample

__all__ = [
    "ExactIndex",
    "IVFIndex",
    "NearestIndex",
    "PatchMemory",
    "gaussian_smooth",
    "mean_filter",
    "upsample",
]
