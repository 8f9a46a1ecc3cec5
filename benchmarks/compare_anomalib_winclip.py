"""Compare anomalign's WinCLIP with anomalib's ``WinClipModel`` (not run in CI).

Both are built on the *same* random ViT-B-16-plus-240 weights (seeded open_clip init,
written to a checkpoint that anomalign loads and anomalib's factory call returns) and
scored on the *same* normalised pixel tensors (anomalib with ``apply_transform=False``),
zero-shot and k-shot. Prints, per mode, the largest absolute difference of the anomaly
maps (240 x 240) and of the image scores, then the ms/image of both measured in the same
run on the same threads (medians of calls taken in turn).

anomalib is not a dependency of anomalign: install it in a throwaway environment, e.g.

    python -m venv /tmp/anomalib-venv && /tmp/anomalib-venv/bin/pip install \\
        -c constraints.txt torch torchvision anomalib==2.7.0 -e .
    /tmp/anomalib-venv/bin/python benchmarks/compare_anomalib_winclip.py [--images 4] [--shots 1]

Every difference between the two, and how each row of the output accounts for it:

1. *Window layout (a bug of the peer under open_clip >= 2.26.1).* anomalib 2.7 permutes
   the window sequences to (L, N, D) before ``visual.transformer``, as open_clip <= 2.24
   expected; since 2.26.1 (and in open_clip 3, which anomalign uses) the transformer is
   batch-first, so the permuted call attends across windows instead of within each one.
   anomalib's ``clip`` extra pins ``open-clip-torch<2.26.1`` for this reason. Row "as
   installed" runs anomalib unchanged; every other row runs it as under its pinned
   open_clip (the transformer told its input is sequence-first for the window call only).
2. *Prompt templates.* anomalib's template list has 21 sentences: it lacks "a cropped
   photo of a {}." and has "a jpeg corrupted photo of the {}." twice where the paper's
   list (WinCLIP supplementary; anomalign's) has the "a" and "the" forms, 22 in all. Row
   "anomalib's templates" gives anomalign anomalib's list (the parity check, goal
   <= 1e-4); row "paper's templates" shows what the paper's list changes.
3. *Arithmetic order (no intended effect).* anomalign embeds every window of one scale
   in one batched transformer call (anomalib: one ``index_select`` per window, then one
   call), gathers the tokens after ``ln_pre`` (a per-token LayerNorm, so the order does
   not matter) and computes the harmonic aggregation as one matrix product over a
   window-coverage matrix (anomalib: a loop over patches).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

ARCH = "ViT-B-16-plus-240"


def _original_factory() -> Callable:
    import open_clip

    return open_clip.create_model_and_transforms


_CREATE = _original_factory()


def random_clip(seed: int = 0):
    """The seeded random ViT-B-16-plus-240 (model, train and eval transforms)."""
    torch.manual_seed(seed)
    return _CREATE(ARCH, pretrained=None)


def interleaved(first: Callable, second: Callable, repeats: int) -> tuple[float, float]:
    """Median seconds of ``first()`` and ``second()`` called in turn ``repeats`` times
    after one warm-up call each (so a slow spell of a shared machine hits both)."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in zip((first, second), times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


@contextlib.contextmanager
def anomalib_templates(templates: list[str]) -> Iterator[None]:
    """anomalign's WinCLIP prompt ensemble built from ``templates`` for the duration."""
    from anomalign.methods.winclip import prompts

    saved = prompts.TEMPLATES
    prompts.TEMPLATES = tuple(templates)
    try:
        yield
    finally:
        prompts.TEMPLATES = saved


def sequence_first_windows(model) -> None:
    """Run anomalib's window call as under its pinned open_clip (<= 2.24): its (L, N, D)
    window batch is transposed to batch-first inside the transformer and back."""
    original = model._get_window_embeddings
    transformer = model.clip.visual.transformer

    def patched(feature_map, masks):
        transformer.batch_first = False
        try:
            return original(feature_map, masks)
        finally:
            transformer.batch_first = True

    model._get_window_embeddings = patched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--category", default="bottle")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    import open_clip
    from anomalib.models.image.winclip import prompting as anomalib_prompting
    from anomalib.models.image.winclip import torch_model as anomalib_winclip

    import anomalign
    from anomalign.backbones import UntrainedBackboneWarning

    model, _, _ = random_clip()
    checkpoint = Path(tempfile.mkdtemp()) / "vitb16plus-random.pt"
    torch.save(model.state_dict(), checkpoint)

    # anomalib's WinClipModel downloads laion400m_e31; give it the same random model
    open_clip.create_model_and_transforms = lambda *a, **k: random_clip()
    try:
        installed = anomalib_winclip.WinClipModel().eval()
        fixed = anomalib_winclip.WinClipModel().eval()
    finally:
        open_clip.create_model_and_transforms = _CREATE
    sequence_first_windows(fixed)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        ours = anomalign.create_detector("winclip", backbone=f"{ARCH}:{checkpoint}")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (240, 240, 3), dtype=np.uint8) for _ in range(args.images)]
    references = [rng.integers(0, 255, (240, 240, 3), dtype=np.uint8) for _ in range(args.shots)]
    pixels = ours.backbone.preprocess(images)
    ref_pixels = ours.backbone.preprocess(references)
    templates = list(anomalib_prompting.TEMPLATES)
    print(
        f"torch {torch.__version__}, open_clip {open_clip.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
        f"{args.images} images, {ARCH} random weights (seed 0)"
    )

    def ours_on(shots: int) -> tuple[torch.Tensor, torch.Tensor]:
        ours.text.clear()
        ours.fit(references[:shots], category=args.category)
        score, grid = ours.score(images, args.category)
        maps = torch.nn.functional.interpolate(grid[:, None], size=(240, 240), mode="bilinear")
        return score, maps[:, 0]

    def theirs_on(model, shots: int) -> tuple[torch.Tensor, torch.Tensor]:
        model.k_shot = 0
        model.setup(args.category, ref_pixels[:shots] if shots else None)
        if not shots:
            model.k_shot = 0
        out = model(pixels)
        return out.pred_score, out.anomaly_map

    def diff(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> str:
        return (
            f"max |map diff| {float((a[1] - b[1]).abs().max()):.2e}, "
            f"max |score diff| {float((a[0] - b[0]).abs().max()):.2e}"
        )

    for shots in (0, args.shots):
        label = "WinCLIP (0-shot)" if not shots else f"WinCLIP+ ({shots}-shot)"
        reference = theirs_on(fixed, shots)
        with anomalib_templates(templates):
            parity = ours_on(shots)
        paper = ours_on(shots)
        fixed_layout = "vs anomalib (layout fixed):"
        print(f"{label}, anomalib's templates {fixed_layout} {diff(parity, reference)}")
        print(f"{label}, paper's templates    {fixed_layout} {diff(paper, reference)}")
        print(
            f"{label}, anomalib's templates vs anomalib as installed: "
            f"{diff(parity, theirs_on(installed, shots))}"
        )

        ours.text.clear()
        ours.fit(references[:shots], category=args.category)
        fixed.k_shot = 0
        fixed.setup(args.category, ref_pixels[:shots] if shots else None)
        if not shots:
            fixed.k_shot = 0
        our_s, their_s = interleaved(
            lambda: ours.score(images, args.category), lambda: fixed(pixels), args.repeats
        )
        print(
            f"{label} speed: anomalign {1000 * our_s / len(images):.0f} ms/image (uint8 images "
            f"in, preprocessing included), anomalib {1000 * their_s / len(images):.0f} ms/image "
            f"(normalised pixels in); ratio {our_s / their_s:.2f}"
        )


if __name__ == "__main__":
    main()
