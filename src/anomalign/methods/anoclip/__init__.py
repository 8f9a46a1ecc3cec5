"""AnoCLIP / AnoCLIP+ (anoclip.md): V-V local tokens, domain-aware state prompts, TTA."""

from anomalign.methods.anoclip.config import AnoCLIPConfig
from anomalign.methods.anoclip.detector import AnoCLIP
from anomalign.methods.anoclip.model import AnoCLIPModel

__all__ = ["AnoCLIP", "AnoCLIPConfig", "AnoCLIPModel"]
