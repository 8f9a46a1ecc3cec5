"""Every layout reader on a tiny tree of its own shape, plus detection and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_trees import make_mvtec, snapshot, write_image, write_mask

from anomalign.data.dataset import load_dataset
from anomalign.data.layouts import detect_layout
from anomalign.errors import ConfigError, DataError


def test_mvtec_samples_labels_and_masks(mvtec_root: Path) -> None:
    dataset = load_dataset(mvtec_root)
    assert dataset.layout == "mvtec"
    assert dataset.categories == ["bottle", "wood"]
    bottle = dataset.by_category("bottle")
    assert len(bottle.train) == 3 and all(s.label == 0 for s in bottle.train)
    test = bottle.test
    assert [s.label for s in test].count(1) == 3
    broken = [s for s in test if s.defect_type == "broken"]
    assert broken[0].mask_path == mvtec_root / "bottle/ground_truth/broken/000_mask.png"
    mask = broken[0].load_mask()
    assert mask.dtype == bool and mask.shape == (8, 8) and mask.sum() == 4
    good = next(s for s in test if s.label == 0)
    assert good.defect_type == "good" and not good.load_mask().any()
    assert good.load_image().shape == (8, 8, 3)


def test_mvtec_category_selection_and_split(mvtec_root: Path) -> None:
    dataset = load_dataset(mvtec_root, categories="wood", split="test")
    assert dataset.categories == ["wood"] and {s.split for s in dataset} == {"test"}


def test_mpdd_detected_by_category_names(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "mpdd", categories=("tubes", "connector"))
    assert detect_layout(root) == "mpdd"
    assert len(load_dataset(root)) == 2 * 8


def test_btad_ok_ko_with_mixed_extensions(tmp_path: Path) -> None:
    root = tmp_path / "btad"
    write_image(root / "01/train/ok/0000.bmp")
    write_image(root / "01/test/ok/0001.bmp")
    write_image(root / "01/test/ko/0002.bmp")
    write_image(root / "01/test/ko/0003.png")
    write_mask(root / "01/ground_truth/ko/0002.png")
    write_mask(root / "01/ground_truth/ko/0003.png")
    dataset = load_dataset(root)
    assert dataset.layout == "btad"
    bad = [s for s in dataset if s.label == 1]
    assert {s.defect_type for s in bad} == {"ko"}
    assert {s.image_path.name: s.mask_path.name for s in bad} == {
        "0002.bmp": "0002.png",
        "0003.png": "0003.png",
    }
    assert {s.defect_type for s in dataset if s.label == 0} == {"good"}


def test_loco_unites_several_masks(tmp_path: Path) -> None:
    root = tmp_path / "loco"
    cat = root / "juice_bottle"
    write_image(cat / "train/good/000.png")
    write_image(cat / "validation/good/000.png")
    write_image(cat / "test/good/000.png")
    write_image(cat / "test/logical_anomalies/000.png")
    write_image(cat / "test/structural_anomalies/000.png")
    write_mask(cat / "ground_truth/logical_anomalies/000/000.png", box=(0, 0, 2, 2))
    write_mask(cat / "ground_truth/logical_anomalies/000/001.png", box=(6, 6, 8, 8), value=7)
    write_mask(cat / "ground_truth/structural_anomalies/000/000.png")
    dataset = load_dataset(root)
    assert dataset.layout == "loco"
    assert [s.split for s in dataset if s.label == 0] == ["train", "validation", "test"]
    logical = next(s for s in dataset if s.defect_type == "logical_anomalies")
    assert len(logical.mask_paths) == 2 and logical.mask_path is None
    assert logical.load_mask().sum() == 8
    assert {s.defect_type for s in dataset if s.label} == {
        "logical_anomalies",
        "structural_anomalies",
    }


def _make_visa(root: Path, header: str = "object,split,label,image,mask") -> Path:
    write_image(root / "candle/Data/Images/Normal/0000.JPG", size=(8, 12), fmt="JPEG")
    write_image(root / "candle/Data/Images/Normal/0001.JPG", size=(8, 12), fmt="JPEG")
    write_image(root / "candle/Data/Images/Anomaly/000.JPG", size=(8, 12), fmt="JPEG")
    write_mask(root / "candle/Data/Masks/Anomaly/000.png", size=(8, 12), value=3)
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv/1cls.csv").write_text(
        f"{header}\r\n"
        "candle,train,normal,candle/Data/Images/Normal/0000.JPG,\r\n"
        "candle,test,normal,candle/Data/Images/Normal/0001.JPG,\r\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\r\n"
    )
    return root


def test_visa_from_split_csv(tmp_path: Path) -> None:
    dataset = load_dataset(_make_visa(tmp_path / "visa"))
    assert dataset.layout == "visa" and dataset.categories == ["candle"]
    assert [(s.split, s.label) for s in dataset] == [("train", 0), ("test", 0), ("test", 1)]
    anomaly = dataset[2]
    assert anomaly.image_path.suffix == ".JPG" and anomaly.defect_type == "anomaly"
    mask = anomaly.load_mask()  # stored as defect id 3: binarised with != 0
    assert mask.shape == (8, 12) and mask.sum() == 4


def test_visa_wrong_header_names_file_and_expected(tmp_path: Path) -> None:
    root = _make_visa(tmp_path / "visa", header="object,split,label,image")
    with pytest.raises(DataError, match=r"1cls\.csv.*expected object,split,label,image,mask"):
        load_dataset(root)


def _make_realiad(root: Path) -> Path:
    images = root / "realiad_256" / "audiojack"
    entries = {"train": [], "test": []}
    for view in (1, 2):
        name = f"OK/S0001/audiojack_0001_OK_C{view}_20230922.jpg"
        write_image(images / name)
        entries["train"].append(
            {"category": "audiojack", "anomaly_class": "OK", "image_path": name, "mask_path": None}
        )
    ng = "NG/BX/S0002/audiojack_0002_NG_C{v}_20230922.{ext}"
    for view in (1, 2):
        write_image(images / ng.format(v=view, ext="jpg"))
        write_mask(images / ng.format(v=view, ext="png"))
    # C1 sees the defect; C2 cannot see it and is labelled OK although it has a mask.
    entries["test"] = [
        {
            "category": "audiojack",
            "anomaly_class": "BX",
            "image_path": ng.format(v=1, ext="jpg"),
            "mask_path": ng.format(v=1, ext="png"),
        },
        {
            "category": "audiojack",
            "anomaly_class": "OK",
            "image_path": ng.format(v=2, ext="jpg"),
            "mask_path": ng.format(v=2, ext="png"),
        },
    ]
    meta = {"meta": {"prefix": "audiojack", "normal_class": "OK"}, **entries}
    (root / "realiad_jsons").mkdir(parents=True)
    (root / "realiad_jsons/audiojack.json").write_text(json.dumps(meta))
    return root


def test_realiad_ok_ng_rules_and_views(tmp_path: Path) -> None:
    root = _make_realiad(tmp_path / "Real-IAD")
    dataset = load_dataset(root)
    assert dataset.layout == "realiad" and dataset.categories == ["audiojack"]
    assert len(dataset.train) == 2
    test = list(dataset.test)
    assert [(s.label, s.defect_type) for s in test] == [(1, "BX"), (0, "good")]
    assert test[0].has_mask and not test[1].has_mask
    c1 = load_dataset(root, views=["C1"])
    assert len(c1) == 2 and all("_C1_" in s.image_path.name for s in c1)
    assert len(load_dataset(root, views=[2])) == 2
    with pytest.raises(DataError, match="C9"):
        load_dataset(root, views=["C9"])


def test_realiad_bad_entry_names_file(tmp_path: Path) -> None:
    root = _make_realiad(tmp_path / "Real-IAD")
    path = root / "realiad_jsons/audiojack.json"
    data = json.loads(path.read_text())
    del data["test"][0]["mask_path"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"audiojack\.json.*mask_path"):
        load_dataset(root)


def test_folder_normal_abnormal_masks_by_stem(tmp_path: Path) -> None:
    root = tmp_path / "my_parts"
    for i in range(5):
        write_image(root / "good" / f"n{i}.jpg", fmt="JPEG")
    write_image(root / "bad" / "scratch" / "a.jpg", fmt="JPEG")
    write_image(root / "bad" / "dent" / "b.png")
    write_mask(root / "masks" / "a_mask.png")
    write_mask(root / "masks" / "b.png")
    dataset = load_dataset(root)
    assert dataset.layout == "folder" and dataset.categories == ["my_parts"]
    assert len(dataset.train) == 1 and len(dataset.test.filter(label=0)) == 4
    bad = {s.image_path.name: s for s in dataset if s.label}
    assert bad["a.jpg"].defect_type == "scratch" and bad["a.jpg"].mask_path.name == "a_mask.png"
    assert bad["b.png"].defect_type == "dent" and bad["b.png"].mask_path.name == "b.png"
    again = load_dataset(root, layout="folder", normal_train_fraction=0.2, seed=0)
    assert [s.image_path for s in again.train] == [s.image_path for s in dataset.train]


def test_folder_explicit_dirs_without_masks(tmp_path: Path) -> None:
    root = tmp_path / "custom"
    write_image(root / "ref" / "r.png")
    write_image(root / "query_ok" / "q.png")
    write_image(root / "query_bad" / "x.png")
    dataset = load_dataset(
        root,
        layout="folder",
        normal_dir="ref",
        normal_test_dir="query_ok",
        abnormal_dir="query_bad",
        category="widget",
    )
    assert [(s.split, s.label, s.category) for s in dataset] == [
        ("train", 0, "widget"),
        ("test", 0, "widget"),
        ("test", 1, "widget"),
    ]
    assert not dataset.has_masks


def test_folder_mvtec_like_single_category(mvtec_root: Path) -> None:
    dataset = load_dataset(mvtec_root / "bottle")
    assert dataset.layout == "folder" and dataset.categories == ["bottle"]
    assert len(dataset) == 8 and dataset.has_masks


def test_elpv_folder_labels(tmp_path: Path) -> None:
    root = tmp_path / "elpv"
    rows = [("mono", 0.0)] * 5 + [("mono", 1.0), ("mono", 1 / 3), ("poly", 0.0), ("poly", 2 / 3)]
    lines = []
    for i, (kind, prob) in enumerate(rows):
        write_image(root / "images" / f"cell{i:04d}.png")
        lines.append(f"images/cell{i:04d}.png  {prob:.15f}  {kind}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    dataset = load_dataset(root)
    assert dataset.layout == "elpv" and dataset.categories == ["mono", "poly"]
    mono = dataset.by_category("mono")
    assert [s.label for s in mono].count(1) == 1 and len(mono) == 6  # p=1/3 left out
    assert len(mono.train) == 1
    assert all(not s.mask_paths for s in dataset)
    strict = load_dataset(root, threshold=0.3)
    assert len(strict.by_category("mono").filter(label=1)) == 2
    assert len(load_dataset(root, categories=["poly"]).filter(label=1)) == 1


def test_elpv_installed_package() -> None:
    pytest.importorskip("elpv_dataset")
    dataset = load_dataset(None, layout="elpv")
    assert dataset.categories == ["mono", "poly"]
    assert len(dataset) > 1500 and {s.label for s in dataset} == {0, 1}
    assert dataset[0].load_image().shape == (300, 300, 3)


# --- errors that name the path and what was expected --------------------------------------


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere.*does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_unrecognised_layout(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty.*Cannot recognise|Cannot recognise.*empty"):
        load_dataset(tmp_path / "empty")


def test_unknown_category(mvtec_root: Path) -> None:
    with pytest.raises(DataError, match=r"Unknown category 'cable'.*expected one of: bottle, wood"):
        load_dataset(mvtec_root, categories=["cable"])


def test_unknown_layout_and_option(mvtec_root: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown dataset layout"):
        load_dataset(mvtec_root, layout="kitti")
    with pytest.raises(ConfigError, match="views"):
        load_dataset(mvtec_root, views=["C1"])


def test_mask_without_image(mvtec_root: Path) -> None:
    write_mask(mvtec_root / "bottle/ground_truth/broken/007_mask.png")
    with pytest.raises(DataError, match=r"007_mask\.png.*no image"):
        load_dataset(mvtec_root)


def test_mask_folder_without_images(mvtec_root: Path) -> None:
    write_mask(mvtec_root / "bottle/ground_truth/bent/000_mask.png")
    with pytest.raises(DataError, match=r"ground_truth/bent.*no images"):
        load_dataset(mvtec_root)


def test_anomalous_image_without_mask(mvtec_root: Path) -> None:
    write_image(mvtec_root / "wood/test/crack/005.png")
    with pytest.raises(DataError, match=r"crack/005\.png.*no mask.*005_mask\.png"):
        load_dataset(mvtec_root)


def test_visa_missing_mask_file(tmp_path: Path) -> None:
    root = _make_visa(tmp_path / "visa")
    (root / "candle/Data/Masks/Anomaly/000.png").unlink()
    with pytest.raises(DataError, match=r"Masks/Anomaly/000\.png.*does not exist"):
        load_dataset(root)


def test_mask_size_mismatch(mvtec_root: Path) -> None:
    write_mask(mvtec_root / "bottle/ground_truth/crack/000_mask.png", size=(4, 4))
    sample = next(s for s in load_dataset(mvtec_root) if s.defect_type == "crack")
    with pytest.raises(DataError, match=r"000_mask\.png.*same size"):
        sample.load_mask()


def test_loading_never_writes(tmp_path: Path) -> None:
    roots = [make_mvtec(tmp_path / "m"), _make_visa(tmp_path / "v"), _make_realiad(tmp_path / "r")]
    before = [snapshot(r) for r in roots]
    for root in roots:
        dataset = load_dataset(root)
        for sample in dataset:
            sample.load_image()
            sample.load_mask()
        dataset.summary()
    assert [snapshot(r) for r in roots] == before


def test_sample_invariants(tmp_path: Path) -> None:
    from anomalign.data.sample import Sample

    with pytest.raises(ValueError):
        Sample(tmp_path / "a.png", "c", "train", 2, "good")
    with pytest.raises(ValueError):
        Sample(tmp_path / "a.png", "c", "train", 0, "good", (tmp_path / "m.png",))
    sample = Sample(str(tmp_path / "a.png"), "c", "test", 1, "x")
    assert isinstance(sample.image_path, Path) and sample.mask_path is None
    write_image(tmp_path / "a.png", size=(5, 7))
    assert sample.image_size() == (5, 7)
    assert np.array_equal(sample.load_mask(), np.zeros((5, 7), dtype=bool))
