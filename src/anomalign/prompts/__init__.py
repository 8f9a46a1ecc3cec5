"""Prompts: AnoCLIP's state prompts and FineGrainedAD's multi-level captions."""

from anomalign.prompts.captions import (
    CaptionError,
    CategoryCaption,
    Vocabularies,
    caption_hash,
    derive_vocabularies,
    generic_caption,
    list_shipped,
    load_caption_file,
    load_shipped,
    resolve_caption,
    shipped_vocabularies,
)

__all__ = [
    "CaptionError",
    "CategoryCaption",
    "Vocabularies",
    "caption_hash",
    "derive_vocabularies",
    "generic_caption",
    "list_shipped",
    "load_caption_file",
    "load_shipped",
    "resolve_caption",
    "shipped_vocabularies",
]
