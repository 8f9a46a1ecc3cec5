"""FineGrainedAD (finegrainedad.md): MLLP prompts, MLSA alignment, VAD + PAD fusion.

The patch memory (VAD) is the shared :class:`anomalign.components.PatchMemory`.
"""

from anomalign.methods.finegrainedad.config import FineGrainedADConfig
from anomalign.methods.finegrainedad.detector import FineGrainedAD
from anomalign.methods.finegrainedad.model import FineGrainedADModel, QueryMatcher
from anomalign.methods.finegrainedad.prompt_learner import (
    MultiLevelPromptLearner,
    build_prompt_texts,
)

__all__ = [
    "FineGrainedAD",
    "FineGrainedADConfig",
    "FineGrainedADModel",
    "MultiLevelPromptLearner",
    "QueryMatcher",
    "build_prompt_texts",
]
