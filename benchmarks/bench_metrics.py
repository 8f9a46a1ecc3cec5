"""Time anomalign's pixel metrics against scikit-learn and a straightforward AUPRO.

Synthetic data: ``--n-maps`` maps of ``--size``² (default 160 × 518², 42.9 M pixels), smooth
low-resolution noise upsampled like a ViT patch grid, with 1-3 elliptic defects per map whose
scores are raised. Prints seconds per step, the largest differences between our values and the
references, and the speed ratios. Not a test: run it by hand,

    PYTHONPATH=src python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import argparse
import time
from bisect import bisect_right

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from anomalign.metrics import PixelMetricAccumulator


def make_data(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth noise maps with 1-3 raised elliptic defect regions each (float32, bool)."""
    rng = np.random.default_rng(seed)
    grid = 37
    maps = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), bool)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        low = rng.random((grid, grid)).astype(np.float32)
        maps[i] = ndimage.zoom(low, size / grid, order=1)[:size, :size]
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(size // 10, size - size // 10, 2)
            ry, rx = rng.integers(size // 40, size // 8, 2)
            ell = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            masks[i] |= ell
            maps[i][ell] += np.float32(rng.uniform(0.1, 0.8))
    return maps, masks


def reference_aupro(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """The official MVTec AD recipe written plainly: per-pixel weights, argsort of all pixels."""
    fp_w = np.zeros(maps.shape, np.float64)
    pro_w = np.zeros(maps.shape, np.float64)
    n_regions = 0
    for i, mask in enumerate(masks):
        lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
        n_regions += n
        fp_w[i][lab == 0] = 1.0
        sizes = np.bincount(lab.ravel())
        inside = lab > 0
        pro_w[i][inside] = 1.0 / sizes[lab[inside]]
    order = np.argsort(maps.ravel())[::-1]
    s = maps.ravel()[order]
    fpr = np.cumsum(fp_w.ravel()[order]) / fp_w.sum()
    pro = np.cumsum(pro_w.ravel()[order]) / n_regions
    keep = np.append(np.diff(s) != 0, True)
    x = np.concatenate(([0.0], np.minimum(fpr[keep], 1), [1.0]))
    y = np.concatenate(([0.0], np.minimum(pro[keep], 1), [1.0]))
    ins = bisect_right(x, limit)
    y_lim = y[ins - 1] + (y[ins] - y[ins - 1]) * (limit - x[ins - 1]) / (x[ins] - x[ins - 1])
    x, y = np.append(x[:ins], limit), np.append(y[:ins], y_lim)
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) / limit)


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def ours(maps: np.ndarray, masks: np.ndarray, variant: str = "mvtec"):
    acc = PixelMetricAccumulator(aupro_variant=variant)
    for m, g in zip(maps, masks, strict=True):  # streamed map by map
        acc.update(m, g)
    return acc.compute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-maps", type=int, default=160)
    ap.add_argument("--size", type=int, default=518)
    ap.add_argument("--skip-f1", action="store_true", help="skip scikit-learn's PR-curve F1")
    args = ap.parse_args()

    maps, masks = make_data(args.n_maps, args.size)
    y, s = masks.ravel(), maps.ravel()
    print(
        f"{args.n_maps} maps of {args.size}x{args.size} = {s.size / 1e6:.1f} M pixels, "
        f"{y.mean():.2%} anomalous"
    )

    res, t_first = timed(ours, maps, masks)  # first call also pays page faults of fresh memory
    res, t_again = timed(ours, maps, masks)
    t_ours = max(t_first, t_again)  # the conservative figure is used for the ratios
    sk_auroc, t_auroc = timed(roc_auc_score, y, s)
    sk_ap, t_ap = timed(average_precision_score, y, s)
    ref_pro, t_pro = timed(reference_aupro, maps, masks)
    compat, t_compat = timed(ours, maps, masks, "compat")

    print(f"sklearn roc_auc_score            {t_auroc:7.2f} s")
    print(f"sklearn average_precision_score  {t_ap:7.2f} s")
    print(f"sklearn AUROC + AP               {t_auroc + t_ap:7.2f} s")
    print(f"reference AUPRO (official recipe){t_pro:7.2f} s")
    if not args.skip_f1:
        (p, r, _), t_f1 = timed(precision_recall_curve, y, s)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = 2 * p * r / (p + r)
        sk_f1 = f1[np.isfinite(f1)].max()
        print(f"sklearn PR-curve F1-max          {t_f1:7.2f} s")
    print(f"anomalign all four (mvtec)       {t_first:7.2f} s   (update per map + compute)")
    print(f"anomalign all four (mvtec), again{t_again:7.2f} s")
    print(f"anomalign all four (compat)      {t_compat:7.2f} s")
    print()
    print(f"|AUROC - sklearn|     {abs(res.auroc - sk_auroc):.2e}")
    print(f"|AP - sklearn|        {abs(res.ap - sk_ap):.2e}")
    if not args.skip_f1:
        print(f"|F1-max - sklearn|    {abs(res.f1_max - sk_f1):.2e}")
    print(f"|AUPRO - reference|   {abs(res.aupro - ref_pro):.2e}")
    print(
        f"values: AUROC {res.auroc:.6f}  AP {res.ap:.6f}  F1-max {res.f1_max:.6f}  "
        f"AUPRO(mvtec) {res.aupro:.6f}  AUPRO(compat) {compat.aupro:.6f}"
    )
    print()
    print(f"ratio sklearn AUROC / anomalign all four (slower run):{t_auroc / t_ours:5.1f}x")
    total = t_auroc + t_ap + t_pro
    print(f"ratio (sklearn AUROC + AP + ref AUPRO) / anomalign:  {total / t_ours:5.1f}x")


if __name__ == "__main__":
    main()
