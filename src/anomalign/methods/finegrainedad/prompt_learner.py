"""Multi-Level Learnable Prompts (MLLP, finegrainedad.md §2).

Sentences come from an MFSC caption (:func:`build_prompt_texts`); each is written as
``"N N N N <sentence>."`` (normal and "handle" abnormal prompts) or ``"N N N N A
<sentence>."`` ("learned" abnormal prompts, the semantic concatenation of PromptAD),
tokenised, and its word embeddings split CoOp-style into a ``[SOS]`` prefix and a
suffix kept as buffers, with the shared learnable contexts put in between.

Levels: one per component (entity caption), the image (summary caption) and the
background. At the image level the relation, colour, texture and shape sentences are
added position-wise to the caption's input embeddings with sigmoid weights (the code's
"concatenation"); abnormal attribute sets are cut to ``n_pro * n_defects`` prompts by
``topk`` on the mean embedding value, as the code does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from anomalign.prompts import CategoryCaption, Vocabularies

#: PromptAD's generic abnormal states (only with ``generic_states=True``; FineGrainedAD
#: itself uses the class-specific phrases only, §9.11).
GENERIC_STATES: tuple[str, ...] = (
    "damaged {}",
    "flawed {}",
    "abnormal {}",
    "imperfect {}",
    "blemished {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)

ATTRIBUTES: tuple[str, ...] = ("relation", "color", "texture", "shape")


@dataclass
class PromptTexts:
    """Every sentence MLLP needs for one category (before the context placeholders)."""

    caption: str
    image_handle: list[str]
    background: str
    background_handle: list[str]
    components: list[str]
    component_handle: list[str]
    attributes: dict[str, str] = field(default_factory=dict)
    attribute_handle: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_defects(self) -> int:
        return len(self.image_handle)


def _abnormal_component(
    text: str, entity: str, location: str, defects: list[str], locations: list[str], rng
) -> str:
    """Entity caption with a random defect after the entity and a different location."""
    out = text.lower()
    state = rng.choice(defects).replace("{}", "")
    if not entity.endswith("s") and entity + "s" in out:
        out = out.replace(entity + "s", entity + "s" + state)
    else:
        out = out.replace(entity, entity + state)
    others = [loc for loc in locations if loc != location] or [location]
    new_location = rng.choice(others)
    if location == "center":
        out = out.replace("center", new_location).replace("centrally", new_location)
    else:
        out = out.replace(location, new_location)
    return out


def build_prompt_texts(
    caption: CategoryCaption,
    vocab: Vocabularies,
    seed: int = 111,
    generic_states: bool = False,
    case_sensitive: bool = False,
) -> PromptTexts:
    """All MLLP sentences of a caption; random choices come from ``random.Random(seed)``.

    A generic caption (:func:`anomalign.prompts.generic_caption`) has no attributes, so
    its image level gets no attribute injection (PromptAD's prompts). Attribute negatives
    are the vocabulary items the caption does not use, compared case-insensitively, or
    exactly as the official code does when ``case_sensitive`` (a given vocabulary).
    """
    defects = list(caption.defects) + (list(GENERIC_STATES) if generic_states else [])
    fg = caption.foreground
    background = caption.background + " background"
    rng = random.Random(seed)
    level2, level3 = caption.level2, caption.level3
    component_handle = [
        _abnormal_component(text, entity, location, defects, list(vocab.locations), rng)
        for text, entity, location in zip(
            level3.entity_captions, level2.entities, level2.locations, strict=True
        )
    ]
    relation_handle = []
    for defect in defects:
        text = level2.relation
        for entity in level2.entities:
            text = text.replace(entity, defect.replace("{}", entity))
        relation_handle.append(text)

    def negatives(used: tuple[str, ...], pool: tuple[str, ...]) -> list[str]:
        if case_sensitive:
            return [item for item in pool if item not in used]
        lowered = {u.lower() for u in used}
        return [item for item in pool if item.lower() not in lowered]

    if caption.generic:
        attributes: dict[str, str] = {}
        attribute_handle: dict[str, list[str]] = {}
    else:
        attributes = {
            "relation": level2.relation,
            "color": ".".join(level3.colors),
            "texture": ".".join(level3.textures),
            "shape": ".".join(level3.shapes),
        }
        attribute_handle = {
            "relation": relation_handle,
            "color": negatives(level3.colors, vocab.colors),
            "texture": negatives(level3.textures, vocab.textures),
            "shape": negatives(level3.shapes, vocab.shapes),
        }

    return PromptTexts(
        caption=caption.caption,
        image_handle=[caption.caption.replace(fg, d.replace("{}", fg)) for d in defects],
        background=background,
        background_handle=[background + d.replace("{}", "") for d in defects],
        components=list(level3.entity_captions),
        component_handle=component_handle,
        attributes=attributes,
        attribute_handle=attribute_handle,
    )


class _Group(nn.Module):
    """Token ids and frozen prefix/suffix embeddings of a list of prompts."""

    def __init__(self, text_encoder, sentences: list[str], learned: bool, n_ctx: int, n_ab: int):
        super().__init__()
        head = " ".join(["N"] * n_ctx) + (" " + " ".join(["A"] * n_ab) if learned else "")
        ids = text_encoder.tokenize([f"{head} {s}." for s in sentences]).cpu()
        with torch.no_grad():
            emb = text_encoder.token_embeddings(ids.to(text_encoder.device)).float().cpu()
        skip = 1 + n_ctx + (n_ab if learned else 0)
        self.register_buffer("ids", ids, persistent=False)
        self.register_buffer("prefix", emb[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", emb[:, skip:].clone(), persistent=False)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class _Level(nn.Module):
    def __init__(self, encoder, normal, handle, learned, n_ctx, n_ab):
        super().__init__()
        self.normal = _Group(encoder, normal, False, n_ctx, n_ab)
        self.handle = _Group(encoder, handle, False, n_ctx, n_ab)
        self.learned = _Group(encoder, learned, True, n_ctx, n_ab)


@dataclass
class LevelFeatures:
    """Row-normalised text features of one level: normal, handle and learned prompts.

    ``raw`` holds the same three before normalisation (the text tower's output), which
    the official code averages before normalising (``feature_average="raw"``).
    """

    normal: torch.Tensor
    handle: torch.Tensor
    learned: torch.Tensor
    raw: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def abnormal(self) -> torch.Tensor:
        return torch.cat([self.handle, self.learned])

    def means(self, average: str = "normalized") -> tuple[torch.Tensor, torch.Tensor]:
        """``t^n`` and ``t^a``: the normalised mean normal and mean abnormal feature, the
        mean taken over row-normalised ("normalized") or unnormalised ("raw") features."""
        if average == "raw" and self.raw is not None:
            normal, handle, learned = self.raw
            abnormal = torch.cat([handle, learned])
        else:
            normal, abnormal = self.normal, self.abnormal
        return F.normalize(normal.mean(0), dim=-1), F.normalize(abnormal.mean(0), dim=-1)

    def pair(self, average: str = "normalized") -> torch.Tensor:
        """``(2, D)``: normalised mean normal and mean abnormal feature (the gallery row)."""
        return torch.stack(self.means(average))


class MultiLevelPromptLearner(nn.Module):
    """MLLP: learnable contexts shared by every level; attribute injection at image level.

    Args:
        text_encoder: the backbone's :class:`~anomalign.backbones.TextEncoder`.
        texts: sentences from :func:`build_prompt_texts`.
        n_pro: copies of the normal context (1 segmentation, 3 classification).
        n_ctx, n_ctx_ab, n_pro_ab: context sizes (4, 1, 4).
        seed: seed of the N(0, 0.02^2) context and ``randn`` attribute-weight init.
        initial: initial values to use instead of the seeded draws (see
            :meth:`set_initial`), e.g. the official run's tensors for a parity check.
    """

    def __init__(
        self,
        text_encoder,
        texts: PromptTexts,
        n_pro: int = 1,
        n_ctx: int = 4,
        n_ctx_ab: int = 1,
        n_pro_ab: int = 4,
        seed: int = 111,
        initial: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.texts = texts
        self.n_pro, self.n_ctx, self.n_ctx_ab, self.n_pro_ab = n_pro, n_ctx, n_ctx_ab, n_pro_ab
        width = text_encoder.width
        generator = torch.Generator().manual_seed(seed)
        self.normal_ctx = nn.Parameter(torch.randn(n_pro, n_ctx, width, generator=generator) * 0.02)
        self.abnormal_ctx = nn.Parameter(
            torch.randn(n_pro_ab, n_ctx_ab, width, generator=generator) * 0.02
        )
        self.normal_w = nn.Parameter(torch.randn(len(ATTRIBUTES), generator=generator))
        self.abnormal_w = nn.Parameter(torch.randn(len(ATTRIBUTES), generator=generator))

        def rep(sentences: list[str]) -> list[str]:
            return [s for s in sentences for _ in range(n_pro)]

        def learned(sentence: str) -> list[str]:
            return [sentence] * (n_pro_ab * n_pro)

        args = (n_ctx, n_ctx_ab)
        enc = text_encoder
        levels = {
            f"component_{i}": _Level(enc, rep([c]), rep([h]), learned(c), *args)
            for i, (c, h) in enumerate(zip(texts.components, texts.component_handle, strict=True))
        }
        levels["image"] = _Level(
            enc, rep([texts.caption]), rep(texts.image_handle), learned(texts.caption), *args
        )
        levels["background"] = _Level(
            enc,
            rep([texts.background]),
            rep(texts.background_handle),
            learned(texts.background),
            *args,
        )
        self.levels = nn.ModuleDict(levels)
        self.attr_normal = nn.ModuleDict(
            {a: _Group(enc, rep([texts.attributes[a]]), False, *args) for a in texts.attributes}
        )
        self.attr_handle = nn.ModuleDict(
            {
                a: _Group(enc, rep(texts.attribute_handle[a]), False, *args)
                for a in texts.attributes
                if texts.attribute_handle.get(a)
            }
        )
        self.attr_learned = nn.ModuleDict(
            {a: _Group(enc, learned(texts.attributes[a]), True, *args) for a in texts.attributes}
        )
        if initial:
            self.set_initial(initial)

    #: Initial tensors a caller may give, and the official attribute names they stand for.
    INITIAL_KEYS: tuple[str, ...] = ("normal_ctx", "abnormal_ctx", "normal_w", "abnormal_w")

    @torch.no_grad()
    def set_initial(self, values: dict[str, torch.Tensor]) -> None:
        """Overwrite the initial parameters with given tensors (shapes must match).

        Keys: ``normal_ctx`` ``(n_pro, n_ctx, width)``, ``abnormal_ctx`` ``(n_pro_ab,
        n_ctx_ab, width)``, ``normal_w`` and ``abnormal_w`` ``(4,)``: the sigmoid weights of
        relation, colour, texture and shape in that order (the official
        ``normal_relation_w`` ... ``abnormal_shape_w``, each of shape ``(1,)``, stacked).
        """
        from anomalign.errors import ConfigError

        unknown = sorted(set(values) - set(self.INITIAL_KEYS))
        if unknown:
            raise ConfigError(
                f"Unknown initial prompt tensors {unknown}; expected {list(self.INITIAL_KEYS)}."
            )
        for name, value in values.items():
            target = getattr(self, name)
            tensor = torch.as_tensor(value, dtype=target.dtype).reshape(-1)
            if tensor.numel() != target.numel():
                raise ConfigError(
                    f"Initial {name} has {tensor.numel()} values; expected shape "
                    f"{tuple(target.shape)}."
                )
            target.copy_(tensor.view_as(target).to(target.device))

    @property
    def level_names(self) -> list[str]:
        """Gallery order: the components, then the image, then the background."""
        return list(self.levels)

    @property
    def num_components(self) -> int:
        return len(self.texts.components)

    # -- assembling input embeddings ---------------------------------------------------

    def _with_ctx(self, group: _Group) -> torch.Tensor:
        copies = len(group) // self.n_pro
        ctx = self.normal_ctx.unsqueeze(0).expand(copies, -1, -1, -1)
        ctx = ctx.reshape(-1, self.n_ctx, self.normal_ctx.shape[-1])
        return torch.cat([group.prefix, ctx, group.suffix], dim=1)

    def _with_learned_ctx(self, group: _Group) -> torch.Tensor:
        width = self.normal_ctx.shape[-1]
        # Same pairing as the code: normal contexts tiled per abnormal copy, abnormal
        # contexts tiled per normal copy (identical pairing when n_pro == 1).
        normal = self.normal_ctx.unsqueeze(0).expand(self.n_pro_ab, -1, -1, -1)
        abnormal = self.abnormal_ctx.unsqueeze(0).expand(self.n_pro, -1, -1, -1)
        return torch.cat(
            [
                group.prefix,
                normal.reshape(-1, self.n_ctx, width),
                abnormal.reshape(-1, self.n_ctx_ab, width),
                group.suffix,
            ],
            dim=1,
        )

    def _topk_rows(self, prompts: torch.Tensor, k: int) -> torch.Tensor:
        """The ``k`` prompts with the largest mean embedding value (the code's choice).

        When fewer than ``k`` exist (the code would fail) they are cycled.
        """
        order = prompts.mean(dim=(1, 2)).topk(min(k, prompts.shape[0])).indices
        if order.numel() < k:
            order = order.repeat((k + order.numel() - 1) // order.numel())[:k]
        return prompts[order]

    def embeddings(self) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per level: input embeddings of the normal, handle and learned prompts."""
        out = {}
        for name, level in self.levels.items():
            out[name] = (
                self._with_ctx(level.normal),
                self._with_ctx(level.handle),
                self._with_learned_ctx(level.learned),
            )
        normal, handle, learned = out["image"]
        wn, wa = torch.sigmoid(self.normal_w), torch.sigmoid(self.abnormal_w)
        for i, attr in enumerate(ATTRIBUTES):
            if attr not in self.attr_normal:  # a generic caption has no attributes
                continue
            normal = normal + wn[i] * self._with_ctx(self.attr_normal[attr])
            if attr in self.attr_handle:
                negatives = self._with_ctx(self.attr_handle[attr])
                handle = handle + wa[i] * self._topk_rows(negatives, handle.shape[0])
            learned = learned + wa[i] * self._with_learned_ctx(self.attr_learned[attr])
        out["image"] = (normal, handle, learned)
        return out

    def encode(self, text_encoder, truncate: bool | None = None) -> dict[str, LevelFeatures]:
        """Row-normalised text features of every level, all levels in one batched call of
        :meth:`~anomalign.backbones.TextEncoder.encode_embeddings` (``truncate`` is passed
        on: None runs each prompt up to its EOT, False at full length; same features)."""
        embeds = self.embeddings()
        chunks, ids, sizes = [], [], []
        for name, level in self.levels.items():
            for tensor, group in zip(
                embeds[name], (level.normal, level.handle, level.learned), strict=True
            ):
                chunks.append(tensor)
                ids.append(group.ids)
                sizes.append(tensor.shape[0])
        features = text_encoder.encode_embeddings(
            torch.cat(chunks).to(text_encoder.device),
            torch.cat(ids).to(text_encoder.device),
            truncate=truncate,
        )
        raw = features.float()
        parts = iter(F.normalize(raw, dim=-1).split(sizes))
        raws = iter(raw.split(sizes))
        return {
            name: LevelFeatures(
                next(parts), next(parts), next(parts), (next(raws), next(raws), next(raws))
            )
            for name in self.levels
        }

    def num_trainable(self) -> int:
        """Trainable parameters of this learner (report this, not the paper's 60K)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
