"""★ ours: the zero+few-shot hybrid (AnoCLIP V-V text map + k-shot patch memory)."""

from anomalign.methods.hybrid.detector import AnoCLIPHybrid, weighted_harmonic

__all__ = ["AnoCLIPHybrid", "weighted_harmonic"]
