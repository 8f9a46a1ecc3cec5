"""The Detector API: a method defined here alone runs through every surface, and option
values from the command line are parsed against their declared types."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch

import anomalign
from anomalign.backbones import Backbone, UntrainedBackboneWarning, as_backbone
from anomalign.bundles import DetectorBundle, TensorSpec
from anomalign.cli import main
from anomalign.data import generate_synthetic_dataset
from anomalign.data.images import load_rgb
from anomalign.errors import ConfigError
from anomalign.evaluation import BenchmarkConfig, SyntheticOptions, run_benchmark
from anomalign.methods import Detector, method_spec, register_method, unregister_method
from anomalign.results import Prediction

NAME = "test-patch-distance"


@dataclass(frozen=True)
class PatchDistanceConfig:
    """Options of the test method (typed, so the CLI can parse them)."""

    preset: Literal["default", "official"] = "default"
    blocks: tuple[int, ...] = (1,)
    scale: float = 1.0
    reduce: Literal["max", "mean"] = "max"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PatchDistance(Detector):
    """A memory method on the backbone seam: distance of each patch token to the nearest
    normal token of the same block (no text tower needed)."""

    name = NAME
    config_class = PatchDistanceConfig

    def __init__(self, backbone: Any, device: str = "cpu", **options: Any) -> None:
        super().__init__()
        self.config = PatchDistanceConfig(**options)
        self.backbone = as_backbone(backbone, device)
        self.bank: torch.Tensor | None = None

    def _tokens(self, images: list[Any]) -> torch.Tensor:
        tokens = self.backbone.encode(self.backbone.preprocess(images), self.config.blocks)
        return torch.nn.functional.normalize(tokens.intermediates[self.config.blocks[0]], dim=-1)

    def _fit(self, images: list[Any], *, category: str | None, **inputs: Any) -> None:
        tokens = self._tokens(images)
        self.bank = tokens.reshape(-1, tokens.shape[-1])

    def _predict(self, images, *, category, output_size, batch_size) -> Prediction:
        assert self.bank is not None, "fit first"
        tokens = self._tokens(images)
        distance = 1 - (tokens @ self.bank.T).max(-1).values  # (B, N)
        h, w = self.backbone.grid_size
        maps = distance.view(-1, 1, h, w) * self.config.scale
        size = output_size or self.backbone.image_size
        size = (size, size) if isinstance(size, int) else size
        maps = torch.nn.functional.interpolate(maps, size=tuple(size), mode="bilinear")[:, 0]
        flat = maps.flatten(1)
        scores = flat.max(1).values if self.config.reduce == "max" else flat.mean(1)
        return Prediction(scores.numpy(), maps.numpy(), self._describe())

    def _describe(self) -> dict[str, Any]:
        return {"method": self.name, "options": self.config.to_dict(), **self.backbone.describe()}

    def _bundle(self) -> DetectorBundle:
        assert self.bank is not None
        return DetectorBundle(
            self.name, str(self.backbone.spec), self.config.to_dict(), {"bank": self.bank}
        )

    @classmethod
    def _bundle_tensors(cls, bundle: DetectorBundle) -> dict[str, TensorSpec]:
        return {"bank": TensorSpec(("M", "W"))}  # normal tokens, one row each

    @classmethod
    def _restore(cls, bundle: DetectorBundle, backbone: Any, device: str) -> PatchDistance:
        config = dict(bundle.config)
        config["blocks"] = tuple(config["blocks"])
        detector = cls(backbone or bundle.backbone, device, **config)
        detector.bank = bundle.tensors["bank"]
        return detector


@pytest.fixture
def registered():
    register_method(NAME, learning="few-shot", eval_size=48, needs_text=False, replace=True)(
        PatchDistance
    )
    yield method_spec(NAME)
    unregister_method(NAME)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("registry") / "synth",
        categories=("synth_texture",),
        image_size=48,
        n_train=3,
        n_test_good=2,
        n_test_defect=2,
    )


def test_an_outside_method_runs_through_every_surface(
    registered, data: Path, tiny_backbone: Backbone, tmp_path: Path, capsys
) -> None:
    assert registered.learning == "few-shot" and not registered.zero_shot
    assert NAME in [m.name for m in anomalign.list_methods()]
    train = sorted((data / "synth_texture" / "train" / "good").glob("*.png"))
    test = sorted((data / "synth_texture" / "test").rglob("*.png"))

    detector = anomalign.create_detector(NAME, backbone=tiny_backbone, scale=2.0)
    assert detector.fit(train, category="synth_texture") is detector
    expected = detector.predict(test)
    assert isinstance(expected, anomalign.Prediction) and expected.maps.shape == (4, 64, 64)
    path = detector.save(tmp_path / "pd.anomalign")
    loaded = anomalign.load_detector(path, backbone=tiny_backbone)
    assert type(loaded) is PatchDistance and loaded.config.scale == 2.0
    got = loaded.predict(test)
    np.testing.assert_array_equal(got.scores, expected.scores)
    np.testing.assert_array_equal(got.maps, expected.maps)
    assert loaded.fingerprint() == detector.fingerprint()
    assert detector.clone().bank is None and detector.clone().config == detector.config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        bundle = tmp_path / "cli.anomalign"
        argv = ["fit", "--method", NAME, "--normal", str(train[0]), str(train[1])]
        argv += ["--backbone", "anomalign-tiny:random", "--out", str(bundle)]
        argv += ["--option", "blocks=2", "--option", "reduce=mean", "--threshold", "0.5"]
        assert main(argv) == 0
        cli_detector = anomalign.load_detector(bundle)
        assert cli_detector.config.blocks == (2,) and cli_detector.config.reduce == "mean"
        out = tmp_path / "pred"
        inputs = str(data / "synth_texture" / "test")
        assert main(["predict", str(bundle), inputs, "--out", str(out)]) == 0
        rows = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
        assert len(rows) == 4 and {r["decision"] for r in rows} <= {"anomalous", "normal"}

    config = BenchmarkConfig(
        dataset="synthetic",
        methods=(NAME,),
        shots=(1, 2),
        seeds=(0,),
        backbone="anomalign-tiny:random",
        overlays=0,
        synthetic=SyntheticOptions(
            categories=("synth_texture",), image_size=48, n_train=3, n_test_good=2, n_test_defect=2
        ),
    )
    result = run_benchmark(config, tmp_path / "bench", backbone=tiny_backbone, progress=False)
    assert sorted(u.shots for u in result.computed) == [1, 2]
    assert {u["eval"]["size"] for u in result.units} == {48}  # the spec's protocol size
    assert all(u["method_info"]["method"] == NAME for u in result.units)
    capsys.readouterr()


def test_a_fixed_option_and_an_unknown_method_are_refused(tiny_backbone: Backbone) -> None:
    with pytest.raises(ConfigError, match="fixed"):
        anomalign.create_detector("anoclip+", backbone=tiny_backbone, tta=False)
    with pytest.raises(ConfigError, match="Unknown method 'nope'"):
        anomalign.create_detector("nope", backbone=tiny_backbone)


def test_both_surfaces_give_the_same_prediction_type(tiny_backbone: Backbone, tmp_path) -> None:
    image = load_rgb(np.full((40, 50, 3), 120, np.uint8))
    fresh = anomalign.create_detector("anoclip", backbone=tiny_backbone, image_score="single")
    first = fresh.fit(category="bottle").predict(image)
    loaded = anomalign.load_detector(fresh.save(tmp_path / "a.anomalign"), backbone=tiny_backbone)
    second = loaded.predict(image)
    assert type(first) is type(second) is anomalign.Prediction
    np.testing.assert_array_equal(first.maps, second.maps)
    assert isinstance(fresh, anomalign.Detector) and isinstance(loaded, anomalign.AnoCLIP)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("memory_blocks=1,2", (1, 2)),
        ("memory_blocks=[1, 2]", (1, 2)),
        ("seg_epochs=7", 7),
        ("lr=0.01", 0.01),
        ("test_bgr=false", False),
        ("fusion=visual", "visual"),
        ("shots=none", None),
    ],
)
def test_cli_option_values_are_parsed_against_their_type(option: str, expected: Any) -> None:
    key, _, value = option.partition("=")
    assert method_spec("finegrainedad").coerce_options({key: value}) == {key: expected}


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("memory_blocks=1,x", "comma-separated integers"),  # a tuple
        ("seg_epochs=abc", "an integer"),  # an int
        ("lr=nan", "a finite number"),  # a float
        ("test_bgr=maybe", "a boolean"),  # a bool
        ("fusion=fancy", "one of ('harmonic', 'sum', 'textual', 'visual')"),  # a Literal choice
        ("no_such_option=1", "Unknown finegrainedad option"),
    ],
)
def test_bad_option_values_give_one_line_errors(option: str, words: str, capsys, tmp_path) -> None:
    argv = ["fit", "--method", "finegrainedad", "--out", str(tmp_path / "x.anomalign")]
    assert main([*argv, "--option", option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and option.split("=")[0] in err
    assert "Traceback" not in err and not (tmp_path / "x.anomalign").exists()


def test_timm_backbone_family_feeds_a_memory_method(tmp_path: Path, registered) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedBackboneWarning)
        backbone = anomalign.create_detector(NAME, backbone="timm:resnet18:random").backbone
    assert backbone.family == "timm" and backbone.text is None and backbone.untrained
    tokens = backbone.encode(torch.zeros(2, 3, 64, 64), blocks=(2, 3))
    assert tokens.local_tokens is None
    assert tokens.intermediates[2].shape == (2, 16 * 16, 64)  # layer1: stride 4, 64 channels
    assert tokens.intermediate_grids == {2: (16, 16), 3: (8, 8)}
    with pytest.raises(ConfigError, match="text tower"):
        anomalign.create_detector("anoclip", backbone=backbone)
    with pytest.raises(ConfigError, match="do not exist"):
        backbone.encode(torch.zeros(1, 3, 64, 64), blocks=(9,))
