"""FineGrainedAD (finegrainedad.md): MLLP prompts, MLSA alignment, VAD + PAD fusion."""

from anomalign.methods.finegrainedad.config import FineGrainedADConfig
from anomalign.methods.finegrainedad.detector import DEFAULT_BACKBONE, FineGrainedAD
from anomalign.methods.finegrainedad.memory import ExactIndex, IVFIndex, PatchMemory
from anomalign.methods.finegrainedad.model import FineGrainedADModel, QueryMatcher
from anomalign.methods.finegrainedad.prompt_learner import (
    MultiLevelPromptLearner,
    build_prompt_texts,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "ExactIndex",
    "FineGrainedAD",
    "FineGrainedADConfig",
    "FineGrainedADModel",
    "IVFIndex",
    "MultiLevelPromptLearner",
    "PatchMemory",
    "QueryMatcher",
    "build_prompt_texts",
]
