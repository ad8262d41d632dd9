"""Two training processes on a CPU through detectron2's launch (gloo), as `--num-gpus 2` runs them.

Issue 10: both ranks generated the synthetic dataset at once (the loser crashed),
then DDP refused detectron2's ``device_ids=[rank]`` for CPU modules. Here two
processes load the tiny Lite-DINO config at once (generating its dataset), train
a few iterations with tools/train_net.py's trainer, and every encoder variant the
shipped configs use takes DDP steps with ``find_unused_parameters=False``.
"""
import json
import math
import os

import pytest

from .helpers import TINY_CONFIGS, lite_configs, load_config

pytestmark = pytest.mark.detrex
pytest.importorskip("detectron2")
pytest.importorskip("detrex")

ITERS = 3
SMALL = dict(embed_dim=32, num_heads=4, feedforward_dim=64)  # the architecture is kept, the widths shrink
ENCODER_KEYS = ("variant", "attention", "low_query_mode", "value_placement", "use_key_proj", "num_points",
                "low_ffn_ratio", "post_norm")


def shipped_encoder_variants():
    """The distinct Lite encoders of every shipped config, at a small width."""
    found = {}
    for path in lite_configs():
        cfg = load_config(path)
        encoder = cfg.model.transformer.encoder
        kwargs = {k: encoder[k] for k in ENCODER_KEYS if k in encoder}
        levels = encoder.get("num_feature_levels", 4)
        if isinstance(levels, str):  # "${..num_feature_levels}": the transformer's
            levels = cfg.model.transformer.get("num_feature_levels", 4)
        kwargs.update(num_feature_levels=int(levels), **SMALL)
        found[json.dumps(kwargs, sort_keys=True)] = kwargs
    return list(found.values())


def test_shipped_variants_cover_the_paper():
    variants = {(kw["variant"], kw["attention"]) for kw in shipped_encoder_variants()}
    assert {"H2L2-(2+1)x3", "H3L1-(6+1)x1", "H3L1-(3+1)x2", "H3L1-(2+1)x3", "H3L1-(2+1)x4"} <= {v for v, _ in variants}
    assert {a for _, a in variants} == {"kda", "msda"}


def test_two_processes_train_a_tiny_lite_config(tmp_path, monkeypatch):
    from detectron2.engine import launch

    from .ddp_worker import run

    monkeypatch.setenv("LITE_DETR_DATASETS", str(tmp_path / "datasets"))  # both ranks generate it at once
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    report_path = str(tmp_path / "report.json")
    variants = shipped_encoder_variants()
    launch(
        run, 2, dist_url="auto",
        args=(report_path, {"lite_dino": TINY_CONFIGS["lite_dino"]}, variants, ITERS, str(tmp_path / "small")),
    )
    with open(report_path) as f:
        report = json.load(f)
    print(json.dumps(report, indent=1))

    assert report["world_size"] == 2
    run_ = report["configs"]["lite_dino"]
    assert run_["ddp"] == "DistributedDataParallel" and run_["device_ids"] is None
    assert run_["find_unused_parameters"] is False  # detrex's config: every parameter must get a gradient
    assert run_["params_identical"], run_["params_max_diff"]
    assert run_["params_changed"]
    assert len(run_["losses"]) == ITERS and all(math.isfinite(v) for v in run_["losses"])
    assert len(report["encoders"]) == len(variants)
    for entry in report["encoders"]:
        assert entry["params_identical"], entry
    assert os.path.isfile(tmp_path / "lite_dino" / "model_final.pth")
