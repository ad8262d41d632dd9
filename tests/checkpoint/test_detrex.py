"""With detrex: the converted state dicts load strictly into the detrex Lite-DINO models, which run."""
import os

import pytest
import torch

from lite_detr_plugin import swap_encoder
from lite_detr_plugin.checkpoint import convert, layout_of
from lite_detr_plugin.checkpoint.cli import main

from .helpers import CHECKPOINTS, load_layout, official_state_dict

pytestmark = pytest.mark.detrex

DINO_CONFIG = "projects/dino/configs/dino-resnet/dino_r50_4scale_24ep.py"


def _dino_config_path() -> str:
    import detrex

    path = os.path.join(os.path.dirname(os.path.dirname(detrex.__file__)), DINO_CONFIG)
    if not os.path.exists(path):
        pytest.skip(f"detrex's project configs are not next to the detrex package ({path})")
    return path


def _lite_dino_config(variant: str):
    """detrex DINO R50 4-scale with the released Lite-DINO encoder and decoder attention.

    The 24ep config's position embedding (temperature 20, no offset) is the
    released model's; the 12ep one (10000, -0.5) would not reproduce it.
    """
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(_dino_config_path())
    # swap_encoder(decoder_kda=True) nests the decoder config one level deeper, which breaks
    # its relative "${..num_feature_levels}"; pin the value first.
    cfg.model.transformer.decoder.num_feature_levels = cfg.model.transformer.num_feature_levels
    swap_encoder(cfg, variant, attention="kda", decoder_kda=True)
    cfg.model.device = "cpu"
    return cfg


@pytest.fixture(scope="module")
def models():
    from detectron2.config import instantiate

    built = {}

    def get(name):
        if name not in built:
            built[name] = instantiate(_lite_dino_config(CHECKPOINTS[name]).model).eval()
        return built[name]

    return get


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_committed_target_layout_is_the_detrex_model(models, name):
    assert layout_of(models(name).state_dict()) == load_layout("target", name)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_converted_model_loads_strictly_and_detects(models, name):
    from lite_detr_plugin.checkpoint.detrex_target import check_model, position_embedding_warnings

    model = models(name)
    converted, report = convert(
        official_state_dict(load_layout("official", name)), name_hint=name, target=model.state_dict()
    )
    assert report.ok, report.format()
    assert check_model(model, report.variant) == []
    assert position_embedding_warnings(model) == []  # the 24ep config's embedding is the released one
    incompatible = model.load_state_dict(converted, strict=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 224, 288, generator=generator) * 255  # >= 900 tokens for the two-stage top-k
    with torch.no_grad():
        outputs = model([{"image": image, "height": 224, "width": 288}])
    instances = outputs[0]["instances"]
    assert len(instances) > 0
    assert torch.isfinite(instances.pred_boxes.tensor).all() and torch.isfinite(instances.scores).all()
    assert int(instances.pred_classes.max()) < 80


def test_check_model_sees_what_the_keys_cannot(models):
    from lite_detr_plugin.checkpoint.detrex_target import check_model

    problems = check_model(models("r50_s3ex3"), "H2L2-(2+1)x3")
    assert len(problems) == 1 and "H3L1-(2+1)x3" in problems[0]


def test_cli_with_config_file(tmp_path, capsys):
    config = tmp_path / "lite_dino_r50_h3l1_2x3.py"
    config.write_text(
        "from detectron2.config import LazyConfig\n"
        "from lite_detr_plugin import swap_encoder\n"
        f"_cfg = LazyConfig.load({_dino_config_path()!r})\n"
        "_cfg.model.transformer.decoder.num_feature_levels = 4\n"
        "swap_encoder(_cfg, 'H3L1-(2+1)x3', attention='kda', decoder_kda=True)\n"
        "model = _cfg.model\n"
    )
    released = tmp_path / "r50_s3ex3_50.4.pth"
    torch.save({"model": official_state_dict(load_layout("official", "r50_s3ex3"))}, released)
    output = tmp_path / "converted.pth"
    assert main(["--input", str(released), "--output", str(output), "--config-file", str(config)]) == 0
    captured = capsys.readouterr()
    assert "loaded into the config's model with strict=True" in captured.out
    assert "WARNING" not in captured.err
    assert layout_of(torch.load(output, weights_only=False)["model"]) == load_layout("target", "r50_s3ex3")

    # the same checkpoint against a config of another H is refused
    other = tmp_path / "lite_dino_r50_h2l2.py"
    other.write_text(config.read_text().replace("H3L1-(2+1)x3", "H2L2-(2+1)x3"))
    assert main(["--input", str(released), "--dry-run", "--config-file", str(other)]) == 1
    assert "variant is H2L2-(2+1)x3, the checkpoint's H3L1-(2+1)x3" in capsys.readouterr().err
