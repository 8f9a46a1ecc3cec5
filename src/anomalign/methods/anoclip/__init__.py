"""AnoCLIP / AnoCLIP+ (anoclip.md): V-V local tokens, domain-aware state prompts, TTA."""

from anomalign.methods.anoclip.config import AnoCLIPConfig
from anomalign.methods.anoclip.detector import DEFAULT_BACKBONE, AnoCLIP
from anomalign.methods.anoclip.model import AnoCLIPModel

__all__ = ["DEFAULT_BACKBONE", "AnoCLIP", "AnoCLIPConfig", "AnoCLIPModel"]
