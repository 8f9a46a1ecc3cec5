"""Thresholds (manual, FPR rule, F1-optimal) and the fixed map calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from inspect_helpers import fit_detector

from anomalign.backbones import Backbone
from anomalign.calibration import Calibration, calibrate
from anomalign.data import load_dataset
from anomalign.errors import ConfigError
from anomalign.metrics import image_metrics
from anomalign.thresholds import Threshold, manual_threshold, threshold_at_fpr, threshold_f1

CATEGORY = "synth_texture"


@pytest.mark.parametrize(("fpr", "flagged"), [(0.0, 0), (0.05, 5), (0.1, 10), (0.259, 25)])
def test_fpr_rule_on_known_scores(fpr: float, flagged: int) -> None:
    scores = np.random.default_rng(0).permutation(np.arange(1.0, 101.0))
    threshold = threshold_at_fpr(scores, fpr)
    assert threshold.mode == "fpr" and threshold.fpr == fpr
    assert int(threshold.decide(scores).sum()) == flagged
    assert threshold.stats["achieved_fpr"] == flagged / 100
    if flagged:  # halfway between the last unflagged and the first flagged normal score
        assert threshold.value == pytest.approx(100 - flagged + 0.5)
    else:  # just above the largest normal score
        assert 100.0 < threshold.value < 100.0 + 1e-9
    assert "note" not in threshold.stats


def test_fpr_rule_with_ties_and_too_few_images() -> None:
    tied = threshold_at_fpr([0.1, 0.2, 0.2, 0.2, 0.3], 0.4)  # 2 allowed, a tie of 3 -> 1 flagged
    assert tied.decide([0.1, 0.2, 0.2, 0.2, 0.3]).tolist() == [False] * 4 + [True]
    few = threshold_at_fpr([0.1, 0.5, 0.3], 0.05)
    assert few.value > 0.5 and few.stats["achieved_fpr"] == 0.0
    assert "cannot resolve" in few.stats["note"]
    constant = threshold_at_fpr(np.full(4, 0.7, np.float32), 0.5)
    assert not constant.decide(np.full(4, 0.7, np.float32)).any()
    for bad in ([], [0.1, np.nan]):
        with pytest.raises(ConfigError):
            threshold_at_fpr(bad, 0.1)
    with pytest.raises(ConfigError, match="false-positive rate"):
        threshold_at_fpr([0.1], 1.0)


def test_f1_threshold_is_the_metric_threshold_and_reaches_f1_max() -> None:
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(40), np.ones(20)].astype(int)
    scores = np.r_[rng.normal(0.0, 1.0, 40), rng.normal(1.5, 1.0, 20)]
    threshold = threshold_f1(labels, scores, source="synthetic")
    decided = threshold.decide(scores)
    tp = np.sum(decided & (labels == 1))
    f1 = 2 * tp / (decided.sum() + labels.sum())
    reference = image_metrics(labels, scores)
    assert f1 == pytest.approx(reference.f1_max) == pytest.approx(threshold.stats["f1"])
    best = max(  # brute force over every candidate threshold
        2 * np.sum((scores >= t) & (labels == 1)) / (np.sum(scores >= t) + 20) for t in scores
    )
    assert f1 == pytest.approx(best)
    with pytest.raises(ConfigError, match="normal and anomalous"):
        threshold_f1(np.zeros(3), [0.1, 0.2, 0.3])


def test_threshold_round_trip_and_manual() -> None:
    threshold = threshold_at_fpr(np.linspace(0, 1, 21), 0.1, source="val")
    assert Threshold.from_dict(threshold.to_dict()) == threshold
    assert Threshold.from_dict(None) is None
    manual = manual_threshold(0.25)
    assert manual.mode == "manual" and manual.decide([0.2, 0.25]).tolist() == [False, True]
    with pytest.raises(ConfigError):
        Threshold(float("nan"))
    with pytest.raises(ConfigError, match="mode"):
        Threshold(0.1, mode="guess")  # type: ignore[arg-type]


def test_confidence_in_the_decision_follows_one_rule() -> None:
    """0.5 on the threshold, 0.9 one normal spread away on either side; None without a
    threshold, a positive spread or a finite score (service and Ray use this rule)."""
    calibration = Calibration(score_low=1.0, score_high=1.5, n_images=5)
    assert calibration.score_spread == pytest.approx(0.5)
    assert calibration.confidence(1.0, 1.0) == pytest.approx(0.5)
    assert calibration.confidence(1.5, 1.0) == pytest.approx(0.9)
    assert calibration.confidence(0.5, 1.0) == pytest.approx(0.9)
    assert calibration.confidence(2.0, 1.0) == pytest.approx(1 / (1 + 9**-2))
    assert calibration.margin(2.0, 1.0) == pytest.approx(2.0)
    assert calibration.margin(0.5, 1.0) == pytest.approx(-1.0)
    assert calibration.confidence(1e9, 1.0) == 1.0  # no overflow far from the threshold
    assert calibration.confidence(1.0, None) is None
    assert calibration.confidence(float("nan"), 1.0) is None
    assert Calibration().confidence(1.0, 0.5) is None  # uncalibrated: no spread
    assert Calibration(score_low=0.3, score_high=0.3, n_images=1).score_spread is None


def test_calibration_is_one_fixed_range() -> None:
    rng = np.random.default_rng(0)
    normal_maps = [rng.normal(0.3, 0.01, (32, 32)).astype(np.float32) for _ in range(4)]
    calibration = calibrate(normal_maps, [0.1, 0.2, 0.3, 0.4])
    pixels = np.concatenate([m.ravel() for m in normal_maps])
    assert calibration.map_low == pytest.approx(np.median(pixels))
    low, q = calibration.map_low, np.quantile(pixels, 0.999)
    assert calibration.map_high == pytest.approx(low + 2 * (q - low))
    assert (calibration.score_low, calibration.score_high) == pytest.approx((0.25, 0.4))
    # a flat normal map and a map with a defect are encoded on the same scale
    flat = np.full((8, 8), calibration.map_low, np.float32)
    defect = flat.copy()
    defect[2:4, 2:4] = calibration.map_high + 1
    assert calibration.to_uint16(flat).max() == 0
    assert calibration.to_uint16(defect).max() == 65535
    decoded = calibration.from_uint16(calibration.to_uint16(normal_maps[0]))
    inside = (normal_maps[0] >= calibration.map_low) & (normal_maps[0] <= calibration.map_high)
    step = (calibration.map_high - calibration.map_low) / 65535
    assert np.abs(decoded - normal_maps[0])[inside].max() <= step
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    assert not Calibration.from_dict(None).calibrated
    constant = calibrate([np.zeros((4, 4))], [0.0])
    assert constant.map_high > constant.map_low
    with pytest.raises(ConfigError):
        Calibration(map_low=1.0, map_high=1.0)


def test_fpr_and_f1_thresholds_fitted_on_synthetic_data(
    tiny_backbone: Backbone, synth_root: Path
) -> None:
    dataset = load_dataset(synth_root).filter(category=CATEGORY)
    normal = [s.image_path for s in dataset.train]
    test = dataset.test.samples
    options = {"image_score": "single"}
    by_fpr = fit_detector(
        "anoclip", [], CATEGORY, tiny_backbone, method_options=options, val_normal=normal, fpr=0.2
    )
    scores = by_fpr.predict(normal).scores
    assert by_fpr.threshold is not None and by_fpr.threshold.mode == "fpr"
    assert by_fpr.threshold.decide(scores).sum() == 1  # floor(0.2 * 6) normal images flagged
    assert by_fpr.calibration.n_images == len(normal)
    anomalous = [s.image_path for s in test if s.label == 1]
    by_f1 = fit_detector(
        "anoclip",
        category=CATEGORY,
        backbone=tiny_backbone,
        method_options=options,
        val_normal=normal,
        val_anomalous=anomalous,
        f1=True,
    )
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    all_scores = by_f1.predict(normal + anomalous).scores
    reference = image_metrics(labels, all_scores)
    assert by_f1.threshold is not None and by_f1.threshold.mode == "f1"
    assert by_f1.threshold.stats["f1"] == pytest.approx(reference.f1_max)
    with pytest.raises(ConfigError, match="at most one"):
        fit_detector("anoclip", backbone=tiny_backbone, threshold=0.5, f1=True)
    with pytest.raises(ConfigError, match="anomalous validation"):
        fit_detector("anoclip", backbone=tiny_backbone, val_normal=normal, f1=True)
    with pytest.raises(ConfigError, match="needs normal validation images"):
        fit_detector("anoclip", backbone=tiny_backbone, fpr=0.1)
