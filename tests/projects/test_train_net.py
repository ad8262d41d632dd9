"""tools/train_net.py: the learning-rate rule, and training / evaluation on the synthetic dataset.

Needs detectron2 and detrex (skipped cleanly without them).
"""
import json
import math
import os

import pytest

from .helpers import REPO_ROOT, TINY_CONFIGS, load_config, load_train_net, shrink_for_cpu

pytestmark = pytest.mark.detrex
pytest.importorskip("detectron2")
pytest.importorskip("detrex")

DEFORMABLE = "projects/lite_deformable_detr/configs/lite_deformable_detr_r50_h3l1_2x3_two_stage_50ep.py"


@pytest.fixture(scope="module")
def train_net():
    return load_train_net()


@pytest.fixture(scope="module")
def small_val(tmp_path_factory):
    """A 3-image synthetic split to evaluate on (the tiny configs' own val split has 50)."""
    from lite_detr_plugin.data import register_synthetic_dataset

    root = str(tmp_path_factory.mktemp("small") / "shapes")
    train, val = register_synthetic_dataset(root, name="synthetic_small_test", num_train=4, num_val=3)
    return train, val


def _learning_rates(cfg):
    from detectron2.config import instantiate

    shrink_for_cpu(cfg)
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}


def test_deformable_lr_factor_keeps_the_config_factors(train_net):
    cfg = train_net.prepare_config(load_config(DEFORMABLE))
    train_net.prepare_config(cfg)  # idempotent: applying twice does not compound
    lrs = _learning_rates(cfg)
    base = cfg.optimizer.lr
    offsets = [n for n in lrs if "sampling_offsets" in n]
    assert any(n.startswith("transformer.encoder.") for n in offsets)
    assert any(n.startswith("transformer.decoder.") for n in offsets)
    for name, lr in lrs.items():
        expected = base
        if "backbone" in name:
            expected *= 0.1  # detrex's config factor, kept
        if "sampling_offsets" in name or "reference_points" in name:
            expected *= 0.1  # train_net's rule
        assert lr == pytest.approx(expected), name


def test_deformable_lr_factor_can_be_turned_off(train_net):
    from detectron2.config import LazyConfig

    cfg = LazyConfig.apply_overrides(load_config(DEFORMABLE), ["train.deformable_lr_factor=1"])
    lrs = _learning_rates(train_net.prepare_config(cfg))
    offsets = [lr for n, lr in lrs.items() if "sampling_offsets" in n]
    assert offsets and all(lr == pytest.approx(cfg.optimizer.lr) for lr in offsets)


def test_model_device_follows_train_device(train_net):
    from detectron2.config import LazyConfig

    cfg = LazyConfig.apply_overrides(load_config(DEFORMABLE), ["train.device=cpu"])
    assert train_net.prepare_config(cfg).model.device == "cpu"


def _args(train_net, config, *extra, opts=()):
    from detectron2.engine import default_argument_parser

    return default_argument_parser().parse_args(["--config-file", os.path.join(REPO_ROOT, config), *extra, *opts])


def _small_opts(output_dir, val):
    return [
        f"train.output_dir={output_dir}",
        f"dataloader.test.dataset.names={val}",
        f"dataloader.evaluator.dataset_name={val}",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
    ]


def test_tiny_lite_dino_trains_then_evaluates_and_resumes(train_net, small_val, tmp_path):
    """Two iterations with train_net (hooks, checkpoint, the final evaluation), then --eval-only --resume."""
    output = str(tmp_path / "run")
    opts = _small_opts(output, small_val[1]) + [
        "train.max_iter=2",
        "train.eval_period=2",
        "train.log_period=1",
        "train.checkpointer.period=2",
    ]
    train_net.main(_args(train_net, TINY_CONFIGS["lite_dino"], opts=opts))

    with open(os.path.join(output, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    losses = [m["total_loss"] for m in metrics if "total_loss" in m]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert any("bbox/AP" in m for m in metrics)  # the EvalHook ran COCOEvaluator at the end
    assert os.path.isfile(os.path.join(output, "model_final.pth"))
    assert os.path.isfile(os.path.join(output, "coco_instances_results.json"))  # evaluator output follows

    results = train_net.main(_args(train_net, TINY_CONFIGS["lite_dino"], "--eval-only", "--resume", opts=_small_opts(output, small_val[1])))
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75"}
    assert isinstance(results["bbox"]["AP"], float)


@pytest.mark.parametrize("project", ["lite_h_detr", "lite_deformable_detr"])
def test_tiny_eval_only(train_net, small_val, tmp_path, project):
    results = train_net.main(_args(train_net, TINY_CONFIGS[project], "--eval-only", opts=_small_opts(str(tmp_path), small_val[1])))
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75"}
    assert isinstance(results["bbox"]["AP"], float)
