"""Metric values against scikit-learn, brute-force AUPRO references and hand-computed cases."""

import numpy as np
import pytest
import torch
from metric_references import cflow_aupro, official_aupro
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)

from anomalign.metrics import PixelMetricAccumulator, image_metrics, pixel_metrics
from anomalign.metrics import curves as curves_module

TOL = 1e-6


def sk_f1_max(y, s):
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * p * r / (p + r)
    return f1[np.isfinite(f1)].max()


def random_maps(rng, n=6, h=20, w=24, ties=False):
    maps = rng.random((n, h, w)).astype(np.float32)
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(1, n):
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            hh, ww = rng.integers(1, 5), rng.integers(1, 5)
            masks[i, y : y + hh, x : x + ww] = True
            maps[i, y : y + hh, x : x + ww] += rng.random() * 0.6
    if ties:
        maps = np.round(maps * 8).astype(np.float32) / 8
    return maps, masks


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_image_metrics_match_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.4
    s = rng.normal(size=300).astype(np.float32) + y
    if ties:
        s = np.round(s * 3).astype(np.float32)
    m = image_metrics(y, s)
    p, r, _ = precision_recall_curve(y, s)
    assert m.auroc == pytest.approx(roc_auc_score(y, s), abs=TOL)
    assert m.ap == pytest.approx(average_precision_score(y, s), abs=TOL)
    assert m.aupr == pytest.approx(auc(r, p), abs=TOL)
    assert m.f1_max == pytest.approx(sk_f1_max(y, s), abs=TOL)
    pred = s >= m.f1_threshold
    tp = np.sum(pred & y)
    assert 2 * tp / (pred.sum() + y.sum()) == pytest.approx(m.f1_max, abs=TOL)
    assert m.undefined == {}


def test_image_top_score_negative_aupr():
    # Negatives above the first positive: scikit-learn's curve has (R=0, P=0) points there.
    y = np.array([0, 0, 1, 0, 1, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1], dtype=np.float32)
    p, r, _ = precision_recall_curve(y, s)
    assert image_metrics(y, s).aupr == pytest.approx(auc(r, p), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ties", [False, True])
def test_pixel_metrics_match_sklearn_and_official_aupro(seed, ties):
    rng = np.random.default_rng(seed)
    maps, masks = random_maps(rng, ties=ties)
    m = pixel_metrics(maps, masks)
    y, s = masks.ravel(), maps.ravel()
    assert m.auroc == pytest.approx(roc_auc_score(y, s), abs=TOL)
    assert m.ap == pytest.approx(average_precision_score(y, s), abs=TOL)
    assert m.f1_max == pytest.approx(sk_f1_max(y, s), abs=TOL)
    assert m.aupro == pytest.approx(official_aupro(maps, masks), abs=TOL)
    assert m.aupro_variant == "mvtec"
    assert (m.n_pos, m.n_neg) == (int(y.sum()), int((~y).sum()))


@pytest.mark.parametrize("seed", range(3))
def test_compat_aupro_matches_cflow_loop(seed):
    maps, masks = random_maps(np.random.default_rng(seed), n=4, h=12, w=12)
    m = pixel_metrics(maps, masks, aupro_variant="compat")
    assert m.aupro_variant == "compat"
    assert m.aupro == pytest.approx(cflow_aupro(maps, masks), abs=TOL)


@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_aupro_other_limits_match_official(limit):
    maps, masks = random_maps(np.random.default_rng(7), ties=True)
    m = pixel_metrics(maps, masks, fpr_limit=limit)
    assert m.aupro == pytest.approx(official_aupro(maps, masks, limit), abs=TOL)


def test_anomalib_variant_close_to_exact_and_named():
    maps, masks = random_maps(np.random.default_rng(3))
    exact = pixel_metrics(maps, masks).aupro
    m = pixel_metrics(maps, masks, aupro_variant="anomalib")
    assert m.aupro_variant == "anomalib"
    assert abs(m.aupro - exact) < 0.05


def test_hand_computed_image_case():
    m = image_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert m.auroc == pytest.approx(0.75)
    assert m.ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # PR points (R, P): (0, 1) (.5, 1) (.5, .5) (1, 2/3) (1, .5)
    assert m.aupr == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert m.f1_max == pytest.approx(0.8)
    assert m.f1_threshold == pytest.approx(0.35)


def test_hand_computed_aupro_cases():
    masks = np.zeros((3, 6, 6), dtype=bool)
    masks[0, 1:3, 1:3] = True
    masks[1, 3:5, 2:5] = True
    # Perfect map: PRO reaches 1 at FPR 0.
    assert pixel_metrics(masks.astype(np.float32), masks).aupro == pytest.approx(1.0)
    # Region 0 above every normal pixel, region 1 below every one: PRO 0.5 over the whole range.
    maps = np.full(masks.shape, 0.5, dtype=np.float32)
    maps[0][masks[0]] = 1.0
    maps[1][masks[1]] = 0.0
    assert pixel_metrics(maps, masks).aupro == pytest.approx(0.5)
    # Constant map: one tie group, the diagonal; area 0.3**2 / 2 over 0.3.
    m = pixel_metrics(np.zeros(masks.shape, np.float32), masks)
    assert m.aupro == pytest.approx(0.15)
    assert m.auroc == pytest.approx(0.5)
    assert m.ap == pytest.approx(masks.mean())


def test_eight_connectivity_and_regions_per_image():
    masks = np.zeros((2, 5, 5), dtype=bool)
    masks[:, 1, 1] = masks[:, 2, 2] = True  # diagonal neighbours: one region per image
    acc = PixelMetricAccumulator()
    acc.update(np.random.default_rng(0).random((2, 5, 5)), masks)
    assert acc.compute().n_regions == 2


def test_streaming_equals_single_batch():
    maps, masks = random_maps(np.random.default_rng(5), n=8, ties=True)
    acc = PixelMetricAccumulator()
    acc.update(maps[:3], masks[:3])
    acc.update(maps[3], masks[3])
    acc.update(torch.from_numpy(maps[4:]), torch.from_numpy(masks[4:]))
    whole = pixel_metrics(maps, masks)
    got = acc.compute()
    for name in ("auroc", "ap", "f1_max", "f1_threshold", "aupro", "n_regions", "n_pos"):
        assert getattr(got, name) == pytest.approx(getattr(whole, name), abs=1e-12)


def test_torch_tensors_match_numpy():
    maps, masks = random_maps(np.random.default_rng(9))
    a = pixel_metrics(torch.from_numpy(maps), torch.from_numpy(masks))
    b = pixel_metrics(maps, masks)
    assert a.auroc == pytest.approx(b.auroc, abs=1e-12)
    assert a.aupro == pytest.approx(b.aupro, abs=1e-12)


def test_parallel_chunked_sort_matches_sklearn(monkeypatch):
    monkeypatch.setattr(curves_module, "_PARALLEL_MIN", 100)
    maps, masks = random_maps(np.random.default_rng(11), ties=True)
    m = pixel_metrics(maps, masks)
    assert m.auroc == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=TOL)
    assert m.aupro == pytest.approx(official_aupro(maps, masks), abs=TOL)
