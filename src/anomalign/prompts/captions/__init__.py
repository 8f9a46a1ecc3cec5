"""MFSC: FineGrainedAD's multi-level fine-grained semantic captions.

A caption describes one category at three levels (image, foreground components,
component attributes) plus a summary sentence and the category's defect phrases. The
package ships captions for the 15 MVTec AD and 12 VisA categories; users can pass their
own file (see ``anomalign captions build``).
"""

from anomalign.prompts.captions.builder import (
    BuildResult,
    CaptionBuildError,
    LLMSettings,
    build_caption_file,
    request_caption,
)
from anomalign.prompts.captions.generic import GENERIC_DEFECTS, generic_caption
from anomalign.prompts.captions.schema import (
    MAX_ENTITIES,
    MIN_ENTITIES,
    CaptionError,
    CategoryCaption,
    Level1,
    Level2,
    Level3,
    consistency_warnings,
    normalize_category,
    parse_caption,
)
from anomalign.prompts.captions.store import (
    SHIPPED_DATASETS,
    caption_hash,
    list_shipped,
    load_caption_file,
    load_shipped,
    resolve_caption,
    shipped_dataset,
)
from anomalign.prompts.captions.vocab import (
    Vocabularies,
    attribute_negatives,
    derive_vocabularies,
    shipped_vocabularies,
)

__all__ = [
    "GENERIC_DEFECTS",
    "MAX_ENTITIES",
    "MIN_ENTITIES",
    "SHIPPED_DATASETS",
    "BuildResult",
    "CaptionBuildError",
    "CaptionError",
    "CategoryCaption",
    "LLMSettings",
    "Level1",
    "Level2",
    "Level3",
    "Vocabularies",
    "attribute_negatives",
    "build_caption_file",
    "caption_hash",
    "consistency_warnings",
    "derive_vocabularies",
    "generic_caption",
    "list_shipped",
    "load_caption_file",
    "load_shipped",
    "normalize_category",
    "parse_caption",
    "request_caption",
    "resolve_caption",
    "shipped_dataset",
    "shipped_vocabularies",
]
