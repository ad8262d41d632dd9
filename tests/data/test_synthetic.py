"""The synthetic shapes dataset: determinism, idempotence, COCO validity, exact boxes.

These need numpy, Pillow and pycocotools only (no detectron2), so they run in CI.
"""
import json
import os

import numpy as np
import pytest
from PIL import Image

from lite_detr_plugin.data import (
    CATEGORIES,
    default_synthetic_root,
    generate_synthetic_coco,
    synthetic_dataset_exists,
)

from ..helpers.files import read_tree

SMALL = dict(num_train=12, num_val=5, image_size=(96, 128), seed=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_synthetic_coco(str(tmp_path_factory.mktemp("synthetic") / "shapes"), **SMALL)


def _coco(root, split):
    with open(os.path.join(root, "annotations", f"instances_{split}.json")) as f:
        return json.load(f)


def test_same_seed_same_bytes(dataset, tmp_path):
    again = generate_synthetic_coco(str(tmp_path / "again"), **SMALL)
    first, second = read_tree(dataset), read_tree(again)
    assert sorted(first) == sorted(second)
    assert len([n for n in first if n.endswith(".png")]) == SMALL["num_train"] + SMALL["num_val"]
    for name in first:
        assert first[name] == second[name], name


def test_other_seed_other_images(dataset, tmp_path):
    other = generate_synthetic_coco(str(tmp_path / "other"), **dict(SMALL, seed=4))
    assert read_tree(dataset)["train/000000.png"] != read_tree(other)["train/000000.png"]


def test_val_split_does_not_depend_on_num_train(dataset, tmp_path):
    other = generate_synthetic_coco(str(tmp_path / "more_train"), **dict(SMALL, num_train=SMALL["num_train"] + 3))
    assert read_tree(dataset)["val/000000.png"] == read_tree(other)["val/000000.png"]
    assert _coco(dataset, "val") == _coco(other, "val")


def test_idempotent_and_regenerates_on_new_parameters(tmp_path):
    root = str(tmp_path / "shapes")
    generate_synthetic_coco(root, **SMALL)
    image = os.path.join(root, "train", "000000.png")
    stamp = os.stat(image).st_mtime_ns
    os.utime(image, ns=(stamp - 10**9, stamp - 10**9))
    generate_synthetic_coco(root, **SMALL)  # same parameters: nothing rewritten
    assert os.stat(image).st_mtime_ns == stamp - 10**9
    assert synthetic_dataset_exists(root, **SMALL)
    assert not synthetic_dataset_exists(root, **dict(SMALL, num_val=6))
    generate_synthetic_coco(root, **dict(SMALL, num_val=6))  # ours, other parameters: replaced
    assert len(_coco(root, "val")["images"]) == 6
    assert synthetic_dataset_exists(root, **dict(SMALL, num_val=6))
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]  # no staging left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_synthetic_coco(str(root), **SMALL)
    assert (root / "notes.txt").read_text() == "keep me"


def test_default_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LITE_DETR_DATASETS", str(tmp_path))
    assert default_synthetic_root() == os.path.join(str(tmp_path), "synthetic_shapes")
    monkeypatch.delenv("LITE_DETR_DATASETS")
    assert default_synthetic_root() == os.path.join("./datasets", "synthetic_shapes")


@pytest.mark.parametrize("split", ["train", "val"])
def test_pycocotools_loads_a_valid_dataset(dataset, split):
    from pycocotools.coco import COCO

    coco = COCO(os.path.join(dataset, "annotations", f"instances_{split}.json"))
    assert sorted(coco.getCatIds()) == [c["id"] for c in CATEGORIES]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["rectangle", "ellipse", "triangle"]
    images = coco.loadImgs(coco.getImgIds())
    assert len(images) == SMALL[f"num_{split}"]
    assert len({img["file_name"] for img in images}) == len(images)
    annotations = coco.loadAnns(coco.getAnnIds())
    assert len({ann["id"] for ann in annotations}) == len(annotations) > 0
    for img in images:
        height, width = SMALL["image_size"]
        assert (img["height"], img["width"]) == (height, width)
        with Image.open(os.path.join(dataset, split, img["file_name"])) as pil:
            assert pil.size == (width, height) and pil.mode == "RGB"
        assert 1 <= len(coco.getAnnIds(imgIds=img["id"])) <= 4
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        assert ann["iscrowd"] == 0
        assert ann["category_id"] in coco.getCatIds()
        assert w >= 1 and h >= 1 and x >= 0 and y >= 0
        assert x + w <= SMALL["image_size"][1] and y + h <= SMALL["image_size"][0]
        assert 0 < ann["area"] <= w * h


def test_results_round_trip_through_cocoeval(dataset):
    """Ground truth given back as detections scores AP 1.0 with pycocotools' COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(os.path.join(dataset, "annotations", "instances_val.json"))
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt.loadAnns(gt.getAnnIds())
    ]
    evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


@pytest.mark.parametrize("split", ["train", "val"])
def test_every_box_is_the_extent_of_its_drawn_shape(dataset, split):
    """The pixels of each annotation's colour span exactly its box and number its area."""
    coco = _coco(dataset, split)
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for img in coco["images"]:
        pixels = np.asarray(Image.open(os.path.join(dataset, split, img["file_name"])).convert("RGB"))
        for ann in by_image.get(img["id"], []):
            colour = np.array(ann["color"], dtype=np.uint8)
            ys, xs = np.nonzero(np.all(pixels == colour, axis=-1))
            assert len(xs) == ann["area"], (img["file_name"], ann)
            x, y, w, h = ann["bbox"]
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h), (img["file_name"], ann)


def test_background_never_takes_a_shape_colour(dataset):
    """Every shape colour has a channel outside the background's grey range."""
    for split in ("train", "val"):
        for ann in _coco(dataset, split)["annotations"]:
            assert any(c < 50 or c > 205 for c in ann["color"]), ann


def test_categories_are_consistent_across_splits(dataset):
    train, val = _coco(dataset, "train"), _coco(dataset, "val")
    assert train["categories"] == val["categories"] == [dict(c) for c in CATEGORIES]
    used = {a["category_id"] for a in train["annotations"]}
    assert used <= {c["id"] for c in CATEGORIES}
    assert len(used) == len(CATEGORIES)  # every class occurs in the training split


def test_register_with_detectron2(dataset):
    pytest.importorskip("detectron2")
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from lite_detr_plugin.data import register_synthetic_dataset

    train, val = register_synthetic_dataset(dataset, name="synthetic_test_register", generate=False)
    try:
        assert (train, val) == ("synthetic_test_register_train", "synthetic_test_register_val")
        assert register_synthetic_dataset(dataset, name="synthetic_test_register", generate=False) == (train, val)
        dicts = DatasetCatalog.get(val)
        assert len(dicts) == SMALL["num_val"]
        assert MetadataCatalog.get(val).thing_classes == ["rectangle", "ellipse", "triangle"]
        assert all(0 <= obj["category_id"] < 3 for d in dicts for obj in d["annotations"])
    finally:
        for name in (train, val):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
