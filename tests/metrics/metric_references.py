"""Brute-force reference implementations used by the metric tests (deliberately naive)."""

from bisect import bisect_right

import numpy as np
from scipy import ndimage


def official_aupro(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """The official MVTec AD recipe, step by step: per-pixel weights, one sort of all pixels."""
    fp_w, pro_w = np.zeros(maps.shape), np.zeros(maps.shape)
    n_ok, n_regions = 0, 0
    for i, mask in enumerate(masks):
        lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
        n_regions += n
        fp_w[i][lab == 0] = 1
        n_ok += int((lab == 0).sum())
        for k in range(1, n + 1):
            region = lab == k
            pro_w[i][region] = 1.0 / region.sum()
    scores = maps.ravel().astype(np.float64)
    order = np.argsort(scores)[::-1]
    s = scores[order]
    fpr = np.cumsum(fp_w.ravel()[order]) / n_ok
    pro = np.cumsum(pro_w.ravel()[order]) / n_regions
    keep = np.append(np.diff(s) != 0, True)
    x = np.concatenate(([0.0], np.clip(fpr[keep], None, 1), [1.0]))
    y = np.concatenate(([0.0], np.clip(pro[keep], None, 1), [1.0]))
    correction = 0.0
    if limit not in x:
        ins = bisect_right(x.tolist(), limit)
        y_i = y[ins - 1] + (y[ins] - y[ins - 1]) * (limit - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_i + y[ins - 1]) * (limit - x[ins - 1])
    m = x <= limit
    x, y = x[m], y[m]
    return float((np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction) / limit)


def cflow_aupro(maps: np.ndarray, masks: np.ndarray, max_step: int = 200, limit=0.3) -> float:
    """The cflow-ad / APRIL-GAN loop: 200 thresholds, regions relabelled at every threshold."""
    lo, hi = maps.min(), maps.max()
    delta = (hi - lo) / max_step
    pros, fprs = [], []
    for th in np.arange(lo, hi, delta):
        binary = maps > th
        pro = []
        for b, mask in zip(binary, masks, strict=True):
            lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
            for k in range(1, n + 1):
                region = lab == k
                pro.append(b[region].sum() / region.sum())
        inverse = 1 - masks
        fprs.append(np.logical_and(inverse, binary).sum() / inverse.sum())
        pros.append(np.array(pro).mean())
    fprs, pros = np.array(fprs), np.array(pros)
    idx = fprs < limit
    f = fprs[idx]
    f = (f - f.min()) / (f.max() - f.min())
    from sklearn.metrics import auc

    return float(auc(f, pros[idx]))
