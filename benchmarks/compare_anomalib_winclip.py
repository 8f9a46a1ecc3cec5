"""Compare anomalign's WinCLIP with anomalib's ``WinClipModel`` (not run in CI).

Both are built on the *same* random ViT-B-16-plus-240 weights (seeded open_clip init,
written to a checkpoint that anomalign loads and anomalib's factory call returns) and
scored on the *same* normalised pixel tensors (anomalib with ``apply_transform=False``),
zero-shot and k-shot. Prints the largest absolute difference of the anomaly maps and of
the image scores, and the ms/image of both measured in the same run.

anomalib is not a dependency of anomalign: install it in a throwaway environment, e.g.

    python -m venv /tmp/anomalib-venv && /tmp/anomalib-venv/bin/pip install anomalib==2.7.* \\
        -e /path/to/anomalign
    /tmp/anomalib-venv/bin/python benchmarks/compare_anomalib_winclip.py [--images 4] [--shots 1]

Intended differences (none should change the numbers beyond float rounding): anomalign
embeds every window of one scale in one batched transformer call (anomalib: one
``index_select`` per window, then one call), gathers the tokens after ``ln_pre`` (a
per-token LayerNorm, so the order does not matter) and computes the harmonic aggregation
as one matrix product over a window-coverage matrix (anomalib: a loop over patches).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ARCH = "ViT-B-16-plus-240"


def random_clip(seed: int = 0):
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model_and_transforms(ARCH, pretrained=None)


def timed(fn, repeats: int) -> tuple[object, float]:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return out, (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--category", default="bottle")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    import open_clip
    from anomalib.models.image.winclip import torch_model as anomalib_winclip

    import anomalign
    from anomalign.backbones import UntrainedBackboneWarning

    model, _, _ = random_clip()
    checkpoint = Path(tempfile.mkdtemp()) / "vitb16plus-random.pt"
    torch.save(model.state_dict(), checkpoint)

    # anomalib's WinClipModel downloads laion400m_e31; give it the same random model instead
    original = open_clip.create_model_and_transforms
    open_clip.create_model_and_transforms = lambda *a, **k: random_clip()
    try:
        theirs = anomalib_winclip.WinClipModel().eval()
    finally:
        open_clip.create_model_and_transforms = original

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        ours = anomalign.create_detector("winclip", backbone=f"{ARCH}:{checkpoint}")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (240, 240, 3), dtype=np.uint8) for _ in range(args.images)]
    references = [rng.integers(0, 255, (240, 240, 3), dtype=np.uint8) for _ in range(args.shots)]
    pixels = ours.backbone.preprocess(images)
    ref_pixels = ours.backbone.preprocess(references)

    for shots in (0, args.shots):
        ours.fit(references[:shots] if shots else [], category=args.category)
        theirs.setup(args.category, ref_pixels[:shots] if shots else None)
        if not shots:
            theirs.k_shot = 0

        def run_ours():
            score, grid = ours.score(images, args.category)
            maps = torch.nn.functional.interpolate(grid[:, None], size=(240, 240), mode="bilinear")
            return score, maps[:, 0]

        def run_theirs():
            out = theirs(pixels)
            return out.pred_score, out.anomaly_map

        (our_score, our_map), our_s = timed(run_ours, args.repeats)
        (their_score, their_map), their_s = timed(run_theirs, args.repeats)
        label = "WinCLIP (0-shot)" if not shots else f"WinCLIP+ ({shots}-shot)"
        print(
            f"{label}: max |map diff| {float((our_map - their_map).abs().max()):.2e}, "
            f"max |score diff| {float((our_score - their_score).abs().max()):.2e}; "
            f"anomalign {1000 * our_s / len(images):.1f} ms/image, "
            f"anomalib {1000 * their_s / len(images):.1f} ms/image "
            f"(ratio {our_s / their_s:.2f})"
        )


if __name__ == "__main__":
    main()
