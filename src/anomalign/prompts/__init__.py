"""Prompts: AnoCLIP's state prompts and FineGrainedAD's multi-level captions."""
