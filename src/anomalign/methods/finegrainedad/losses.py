"""MLSA losses (finegrainedad.md §3.3) for the segmentation and classification models.

Per level ℓ with normal features T^n, abnormal T^a = [handle; learned] (rows
normalised), t^n = norm(mean T^n), t^a = norm(mean T^a):

* patch-wise cross-entropy ``CE(s·[A·t^n, A·T^a], 0)`` over every anchor token;
* triplet ``mean(ReLU(Σ(A−t^n)² − Σ(A−t^a)² + m))``, the sum over the token axis for
  3-D anchors (the code's quirk, ``reduce="tokens"``) or over channels;
* handle-vs-learned matching ``λ·‖mean T^ah − mean T^al‖²`` (image and components);
* ``L_reg = ‖mean T^al_I − mean norm(Σ_e T^al_e) − mean T^n_B‖`` (segmentation only).

``average="raw"`` is the code's order: t^n and t^a are means of the unnormalised text
features, normalised afterwards, and L_reg's Σ_e sums unnormalised component features;
``"normalized"`` averages and sums row-normalised features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from anomalign.methods.finegrainedad.prompt_learner import LevelFeatures


def triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = 1.0,
    reduce: str = "tokens",
) -> torch.Tensor:
    """PromptAD's triplet loss; ``reduce="tokens"`` sums over dim 1 as the code does."""
    dim = 1 if reduce == "tokens" else -1
    pos = (anchor - positive).pow(2).sum(dim=dim)
    neg = (anchor - negative).pow(2).sum(dim=dim)
    return F.relu(pos - neg + margin).mean()


def patch_cross_entropy(
    anchor: torch.Tensor, normal: torch.Tensor, abnormal: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """CE with label 0 ("normal") of ``scale·[A·t^n, A·T^a]`` over every anchor row."""
    logits = torch.cat([anchor @ normal[:, None], anchor @ abnormal.T], dim=-1) * scale
    logits = logits.reshape(-1, logits.shape[-1])
    return F.cross_entropy(
        logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    )


def _level_terms(
    anchor, level: LevelFeatures, scale, margin, reduce, average="normalized"
) -> torch.Tensor:
    abnormal = level.abnormal
    if average == "raw":
        t_n, t_a = level.means("raw")
    else:
        t_n = F.normalize(level.normal.mean(0), dim=-1)
        t_a = F.normalize(abnormal.mean(0), dim=-1)
    return patch_cross_entropy(anchor, t_n, abnormal, scale) + triplet_loss(
        anchor, t_n[None], t_a[None], margin, reduce
    )


def _match_term(level: LevelFeatures) -> torch.Tensor:
    return (level.handle.mean(0) - level.learned.mean(0)).pow(2).sum()


def weighted_anchors(
    anchor: torch.Tensor, region_weights: torch.Tensor | None, count: int
) -> list[torch.Tensor]:
    """``r_e ⊙ F`` for the ``count`` region levels (components, then background).

    Constant during training (neither factor is learned): compute it once per fit.
    """
    if region_weights is None:
        return [anchor] * count
    return [anchor * region_weights[index][..., None] for index in range(count)]


def mlsa_loss(
    anchor: torch.Tensor,
    levels: dict[str, LevelFeatures],
    scale: torch.Tensor,
    region_weights: torch.Tensor | None = None,
    margin: float = 1.0,
    reduce: str = "tokens",
    lambda_match: float = 0.001,
    reg_loss: bool = True,
    normal_align_loss: bool = False,
    average: str = "normalized",
    weighted: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total MLSA loss and its parts.

    Args:
        anchor: ``(k, N, D)`` normalised patch tokens (segmentation) or ``(k, D)`` global
            tokens (classification).
        levels: features per level, components first, then "image" and "background".
        scale: the logit scale ``s``.
        region_weights: ``(E+1, k, N)`` weights r_e (components then background), or None.
        average: "normalized" or "raw" (the code's order; see the module docstring).
        weighted: :func:`weighted_anchors` computed beforehand (then ``region_weights`` is
            not used); the same values, without the per-step products.
    """
    components = [name for name in levels if name.startswith("component_")]
    region_levels = [*components, "background"]
    if weighted is None:
        weighted = weighted_anchors(anchor, region_weights, len(region_levels))
    parts: dict[str, torch.Tensor] = {}
    parts["image"] = _level_terms(anchor, levels["image"], scale, margin, reduce, average)
    match = _match_term(levels["image"])
    for name, level_anchor in zip(region_levels, weighted, strict=True):
        parts[name] = _level_terms(level_anchor, levels[name], scale, margin, reduce, average)
        if name != "background":
            match = match + _match_term(levels[name])
    parts["match"] = lambda_match * match
    if reg_loss:
        if average == "raw":
            learned = [levels[c].raw[2] if levels[c].raw is not None else levels[c].learned
                       for c in components]  # fmt: skip
        else:
            learned = [levels[c].learned for c in components]
        summed = F.normalize(torch.stack(learned).sum(0), dim=-1)
        residual = (
            levels["image"].learned.mean(0) - summed.mean(0) - levels["background"].normal.mean(0)
        )
        parts["reg"] = residual.norm()
    if normal_align_loss:
        names = [*components, "background"]
        summed = F.normalize(torch.stack([levels[n].normal for n in names]).sum(0), dim=-1)
        parts["normal_align"] = (levels["image"].normal.mean(0) - summed.mean(0)).pow(2).sum()
    total = torch.stack(list(parts.values())).sum()
    return total, {name: float(value.detach()) for name, value in parts.items()}
