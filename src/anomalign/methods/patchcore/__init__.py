"""PatchCore (Roth et al. CVPR 2022): locally aware patch features of two mid-level blocks,
a greedy k-center coreset memory and reweighted nearest-neighbour scores."""

from anomalign.methods.patchcore.config import PatchCoreConfig
from anomalign.methods.patchcore.detector import PatchCore

__all__ = ["PatchCore", "PatchCoreConfig"]
