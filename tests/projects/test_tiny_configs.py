"""The tiny CPU configs: lite_detr_plugin.config.tiny applied to each project's base config.

The detrex-marked tests load the three shipped tiny configs and check every value
the helper sets (what the configs wrote out line by line before), and that the
configs save to YAML and load back. Argument checks run without detectron2.
"""
import os

import pytest

from lite_detr_plugin.config.tiny import tiny_resnet_backbone, tiny_schedule

from .helpers import TINY_CONFIGS, load_config

OUTPUT_DIRS = {name: f"./output/tiny_cpu/{name}" for name in TINY_CONFIGS}


def test_bad_arguments_are_refused_before_detectron2_is_needed():
    with pytest.raises(ValueError, match="depth=50"):
        tiny_resnet_backbone(None, depth=50)
    with pytest.raises(ValueError, match="0 < warmup_iters < decay_at < max_iter"):
        tiny_schedule(None, None, output_dir="out", max_iter=100, decay_at=250)


@pytest.mark.detrex
@pytest.mark.parametrize("project", sorted(TINY_CONFIGS))
def test_tiny_config_values(project, synthetic_root):
    from detectron2.config import instantiate
    from detectron2.modeling.backbone import ResNet
    from omegaconf import OmegaConf

    cfg = load_config(TINY_CONFIGS[project])
    model = cfg.model
    # model: ResNet-18 with GroupNorm from the stem, trainable; narrow FFNs; 3 decoder layers; 3 classes; CPU
    assert model.backbone._target_ is ResNet and model.backbone.freeze_at == 0
    assert model.backbone.stages.depth == 18 and model.backbone.stages.norm == "GN"
    assert model.backbone.out_features == ["res3", "res4", "res5"]
    assert {k: v.channels for k, v in model.neck.input_shapes.items()} == {"res3": 128, "res4": 256, "res5": 512}
    assert model.transformer.encoder.feedforward_dim == 512 and model.transformer.decoder.feedforward_dim == 512
    assert model.transformer.decoder.num_layers == 3
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert resolved["model"]["num_classes"] == 3 and resolved["model"]["criterion"]["num_classes"] == 3
    assert model.device == "cpu"
    # the detector's own query counts
    if project == "lite_h_detr":
        assert (model.num_queries_one2one, model.num_queries_one2many) == (50, 150)
        assert model.transformer.two_stage_num_proposals == 200
    else:
        assert model.num_queries == 100
    assert model.select_box_nums_for_evaluation == 100
    assert model.get("dn_number", 20) == 20
    # data: the synthetic dataset, batch 4, one worker, evaluated into train.output_dir
    train_data = cfg.dataloader.train
    assert train_data.dataset.names == "synthetic_shapes_train" and train_data.total_batch_size == 4
    assert train_data.num_workers == 1 and train_data.mapper.augmentation_with_crop is None
    assert cfg.dataloader.test.dataset.names == "synthetic_shapes_val"
    assert resolved["dataloader"]["evaluator"]["output_dir"] == OUTPUT_DIRS[project] == cfg.train.output_dir
    # optimisation: lr 2e-4 for every parameter, 300 iterations, warm-up 20, x0.1 at 250
    assert cfg.optimizer.lr == 2e-4 and cfg.optimizer.params.lr_factor_func is None
    train = cfg.train
    assert (train.max_iter, train.init_checkpoint, train.device, train.seed) == (300, "", "cpu", 0)
    assert (train.eval_period, train.log_period, train.checkpointer.period) == (300, 20, 1000)
    schedule = instantiate(cfg.lr_multiplier)
    factors = [schedule(i / 300) for i in (0, 10, 20, 249, 251, 299)]
    assert factors[0] == pytest.approx(0.01) and factors[1] == pytest.approx(0.01 + 0.99 * 0.5)
    assert factors[2:4] == [pytest.approx(1.0)] * 2 and factors[4:] == [pytest.approx(0.1)] * 2


@pytest.mark.detrex
@pytest.mark.parametrize("project", sorted(TINY_CONFIGS))
def test_tiny_config_saves_and_loads(project, tmp_path, synthetic_root):
    from detectron2.config import LazyConfig

    cfg = load_config(TINY_CONFIGS[project])
    path = os.path.join(tmp_path, "config.yaml")
    LazyConfig.save(cfg, path)
    loaded = LazyConfig.load(path)
    assert loaded.train.output_dir == OUTPUT_DIRS[project] and loaded.optimizer.params.lr_factor_func is None
    assert loaded.model.transformer.encoder.attention == "kda"
