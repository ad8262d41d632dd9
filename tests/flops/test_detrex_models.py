"""Whole detrex models (needs detectron2 + detrex): the split, and detrex's encoder against ours.

detrex's MSDA runs its PyTorch path on the CPU (grid_sample, counted at 4 per
output); our encoders run the compiled op (counted by our handle). A standard
LiteEncoder computes what detrex's encoder computes, so both must count the same.
Small images keep these fast; the 850×1040 figures are in the README.
"""
import pytest
import torch

from lite_detr_plugin import ops

pytestmark = pytest.mark.detrex

DINO = "projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py"
SIZE = (320, 384)  # levels 40×48, 20×24, 10×12, 5×6


@pytest.fixture(scope="module")
def detrex_root():
    from lite_detr_plugin.config.detrex import DetrexNotFoundError, setup_projects_path

    try:
        root = setup_projects_path()
    except DetrexNotFoundError as exc:
        pytest.skip(str(exc))
    from detrex.layers import MultiScaleDeformableAttention

    try:
        MultiScaleDeformableAttention(embed_dim=32, num_heads=4, num_levels=4, num_points=2, batch_first=True)
    except ImportError as exc:
        pytest.skip(f"detrex's MultiScaleDeformableAttention is unavailable: {exc}")
    if not ops.has_kernel("cpu"):
        pytest.fail(f"the compiled lite_detr op is not loaded ({ops.build_info()})")
    return root


@pytest.fixture(scope="module")
def dino(detrex_root):
    """(cfg, model) of detrex's DINO-R50, built once for the module."""
    from lite_detr_plugin.flops.model import load_detrex_model

    return load_detrex_model(DINO)


@pytest.fixture(autouse=True)
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


_STANDALONE = {}


def standalone(**kwargs):
    """Our encoder's count at SIZE, on its own (detrex-shaped inputs)."""
    from lite_detr_plugin.encoders import LiteEncoder
    from lite_detr_plugin.flops import count_encoder, level_shapes

    key = tuple(sorted(kwargs.items()))
    if key not in _STANDALONE:
        encoder = LiteEncoder(embed_dim=256, num_heads=8, feedforward_dim=2048, attn_dropout=0.0, ffn_dropout=0.0,
                              num_feature_levels=4, **kwargs).eval()
        _STANDALONE[key] = count_encoder(encoder, level_shapes(*SIZE)).total / 1e9
    return _STANDALONE[key]


def test_dino_split_and_detrex_encoder_equals_ours(dino):
    from lite_detr_plugin.flops.model import fixed_size_inputs, model_gflops

    _, model = dino
    result = model_gflops(model, fixed_size_inputs(*SIZE))
    parts = ("backbone", "neck", "encoder", "decoder", "other")
    assert sum(result[p] for p in parts) == pytest.approx(result["total"])
    assert all(result[p] > 0 for p in parts)
    assert result["modules"]["encoder"].endswith("transformer.encoder")
    assert not any("grid_sampler" in op or "Deform" in op for op in result["unsupported_ops"])
    ours = standalone(variant="standard", attention="msda", value_placement="tokens")
    assert result["encoder"] == pytest.approx(ours, rel=1e-9)


def test_lite_swap(detrex_root):
    from lite_detr_plugin.flops.model import fixed_size_inputs, load_detrex_model, model_gflops

    swap = dict(variant="H3L1-(2+1)x3", attention="kda", low_query_mode="paper", value_placement="auto")
    _, model = load_detrex_model(DINO, swap_encoder=swap)
    result = model_gflops(model, fixed_size_inputs(*SIZE))
    assert result["encoder"] == pytest.approx(standalone(**swap), rel=1e-9)
    assert result["encoder"] < 0.5 * standalone(variant="standard", attention="msda", value_placement="tokens")


def test_dataset_average(dino, tmp_path):
    import copy

    import detectron2.data.transforms as T
    from detectron2.config import LazyCall as L

    from lite_detr_plugin.data import register_synthetic_dataset
    from lite_detr_plugin.flops.model import averaged_gflops, dataset_inputs, model_gflops

    _, val = register_synthetic_dataset(str(tmp_path / "shapes"), name="flops_test_shapes", num_train=1,
                                        num_val=3, image_size=(96, 128), min_size=8)
    cfg, model = copy.deepcopy(dino[0]), dino[1]
    # DINO keeps 900 proposals: the images need more tokens than that (256×341: 1,840)
    cfg.dataloader.test.mapper.augmentation = [L(T.ResizeShortestEdge)(short_edge_length=256, max_size=400)]
    batches = list(dataset_inputs(cfg, val, 2))
    assert len(batches) == 2 and tuple(batches[0][0]["image"].shape[-2:]) == (256, 341)
    averaged = averaged_gflops(model, batches, progress=False)
    singles = [image["total"] for image in averaged["per_image"]]
    assert averaged["num_images"] == 2 and averaged["image_sizes"] == [(256, 341), (256, 341)]
    assert singles[0] == pytest.approx(model_gflops(model, batches[0])["total"])
    assert averaged["total"] == pytest.approx(sum(singles) / 2)
    assert averaged["total_std"] == pytest.approx(abs(singles[0] - singles[1]) / 2)
    assert averaged["encoder"] == pytest.approx(sum(i["encoder"] for i in averaged["per_image"]) / 2)


def test_cli_config_file(detrex_root, tmp_path, capsys):
    import json

    from lite_detr_plugin.flops.cli import main

    out_json = tmp_path / "model.json"
    assert main(["--config-file", DINO, "--size", "320x384", "--swap-encoder", "H2L2-(2+1)x3", "--low-query-mode",
                 "paper", "--json", str(out_json), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| backbone" in out and "with LiteEncoder H2L2-(2+1)x3" in out
    data = json.loads(out_json.read_text())
    assert data["counting"] == "paper"
    assert data["encoder"] > 0 and data["total"] == pytest.approx(
        sum(data[k] for k in ("backbone", "neck", "encoder", "decoder", "other")))
