"""Edge cases: single-class categories, non-finite maps, constant maps, shape mismatches."""

import math

import numpy as np
import pytest

from anomalign.errors import AnomalignError
from anomalign.metrics import (
    CategoryMetrics,
    MetricError,
    PixelMetricAccumulator,
    image_metrics,
    pixel_metrics,
    summarize,
)


def test_single_class_image_auroc_is_undefined_with_reason():
    m = image_metrics([0, 0, 0], [0.1, 0.5, 0.2])
    assert m.auroc is None and m.ap is None and m.f1_max is None
    assert "no anomalous" in m.undefined["auroc"]
    m = image_metrics([1, 1], [0.1, 0.5])
    assert m.auroc is None and "no normal" in m.undefined["auroc"]
    assert m.ap == 1.0
    assert all(v is None or not math.isnan(v) for v in (m.auroc, m.ap, m.aupr, m.f1_max))


def test_pixel_category_without_defects_is_undefined():
    m = pixel_metrics(np.random.default_rng(0).random((2, 4, 4)), np.zeros((2, 4, 4), bool))
    assert m.auroc is None and m.aupro is None
    assert "no anomalous pixels" in m.undefined["aupro"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_maps_raise(bad):
    maps = np.zeros((2, 4, 4), np.float32)
    maps[1, 2, 2] = bad
    with pytest.raises(MetricError, match="nan/inf"):
        pixel_metrics(maps, np.ones((2, 4, 4), bool))
    with pytest.raises(MetricError, match="nan/inf"):
        image_metrics([0, 1], [0.0, bad])


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(MetricError, match=r"\(2, 8, 8\).*\(2, 4, 4\)") as err:
        pixel_metrics(np.zeros((2, 8, 8)), np.zeros((2, 4, 4), bool))
    assert isinstance(err.value, AnomalignError) and isinstance(err.value, ValueError)
    with pytest.raises(MetricError, match=r"\(3,\).*\(2,\)"):
        image_metrics([0, 1, 1], [0.2, 0.3])


def test_non_binary_masks_raise():
    with pytest.raises(MetricError, match="0/1"):
        pixel_metrics(np.zeros((4, 4)), np.full((4, 4), 255, np.uint8))


def test_constant_maps_exact_and_compat():
    masks = np.zeros((2, 6, 6), bool)
    masks[1, :2, :2] = True
    maps = np.full(masks.shape, 0.7, np.float32)
    m = pixel_metrics(maps, masks)
    assert m.auroc == pytest.approx(0.5) and m.aupro == pytest.approx(0.15)
    c = pixel_metrics(maps, masks, aupro_variant="compat")
    assert c.aupro is None and "constant" in c.undefined["aupro"]
    assert c.auroc == pytest.approx(0.5)


def test_bad_options_and_empty_accumulator():
    with pytest.raises(MetricError, match="variant"):
        PixelMetricAccumulator(aupro_variant="skimage")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="fpr_limit"):
        PixelMetricAccumulator(fpr_limit=0.0)
    with pytest.raises(MetricError, match="update"):
        PixelMetricAccumulator().compute()


def test_summarize_means_and_exclusions():
    good = CategoryMetrics(image=image_metrics([0, 1, 1], [0.5, 0.9, 0.2]))
    single = CategoryMetrics(image=image_metrics([0, 0], [0.1, 0.2]))
    other = CategoryMetrics(image=image_metrics([0, 1], [0.1, 0.9]))
    rep = summarize({"a": good, "b": single, "c": other})
    assert rep.mean["image_auroc"] == pytest.approx((0.5 + 1.0) / 2)
    assert rep.n_averaged["image_auroc"] == 2
    assert "no anomalous" in rep.excluded["image_auroc"]["b"]
    assert rep.variants["image_ap"].startswith("step")
    assert rep.to_dict()["categories"]["a"]["image"]["auroc"] == pytest.approx(0.5)


def test_summarize_refuses_mixed_aupro_variants():
    maps = np.random.default_rng(0).random((2, 6, 6)).astype(np.float32)
    masks = np.zeros((2, 6, 6), bool)
    masks[1, 1:3, 1:3] = True
    a = CategoryMetrics(pixel=pixel_metrics(maps, masks))
    b = CategoryMetrics(pixel=pixel_metrics(maps, masks, aupro_variant="compat"))
    assert summarize({"a": a}).variants["pixel_aupro"] == "mvtec@0.3"
    with pytest.raises(MetricError, match="mix AUPRO"):
        summarize({"a": a, "b": b})
