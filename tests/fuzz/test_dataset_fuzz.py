"""Fuzzing the synthetic dataset generator with odd parameters.

Contract: generate_synthetic_coco either writes a valid dataset (every box inside
its image, at least min_size wide and tall, COCO json consistent with the files)
or raises ValueError naming the parameter; never a numpy error or a hang.
"""
import json
import os
import tempfile

from hypothesis import given
from hypothesis import strategies as st

from lite_detr_plugin.data import generate_synthetic_coco

from .budget import budget

NAMES = ("num_train", "num_val", "image_size", "seed", "max_objects", "min_size")
ODD_INT = st.one_of(st.integers(-3, 3), st.just(2**70), st.just(-(2**63)), st.floats(0, 3), st.none(), st.text(max_size=2),
                    st.booleans())


@st.composite
def parameters(draw):
    size = draw(st.one_of(
        st.tuples(st.integers(8, 48), st.integers(8, 48)),
        st.tuples(st.integers(-2, 10), st.integers(-2, 10)),
        st.sampled_from([(32,), (32, 32, 3), "32x32", None, (32.0, 40), (5000, 8)]),
    ))
    params = dict(
        num_train=draw(st.one_of(st.integers(1, 2), ODD_INT)),
        num_val=draw(st.one_of(st.integers(1, 2), ODD_INT)),
        image_size=size,
        seed=draw(st.one_of(st.integers(0, 2**40), ODD_INT)),
        max_objects=draw(st.one_of(st.integers(1, 5), ODD_INT, st.just(10**6))),
        min_size=draw(st.one_of(st.integers(2, 12), ODD_INT)),
    )
    drop = draw(st.lists(st.sampled_from(["seed", "max_objects", "min_size"]), max_size=2, unique=True))
    return {k: v for k, v in params.items() if k not in drop}


@budget(120)
@given(parameters())
def test_generator_writes_a_valid_dataset_or_refuses_by_name(params):
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "shapes")
        try:
            generate_synthetic_coco(root, **params)
        except ValueError as exc:
            assert any(name in str(exc) for name in NAMES), str(exc)
            return
        height, width = params["image_size"]
        for split in ("train", "val"):
            with open(os.path.join(root, "annotations", f"instances_{split}.json")) as f:
                coco = json.load(f)
            assert len(coco["images"]) == params[f"num_{split}"]
            assert sorted(os.listdir(os.path.join(root, split))) == sorted(i["file_name"] for i in coco["images"])
            for ann in coco["annotations"]:
                x, y, w, h = ann["bbox"]
                assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
                assert ann["area"] > 0 and w >= 1 and h >= 1
            per_image = {}
            for ann in coco["annotations"]:
                per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
            assert max(per_image.values(), default=0) <= params.get("max_objects", 4)
