"""(b) of the issue: detrex's DINO, H-DETR and Deformable DETR after swap_encoder, on CPU.

Each R50 config is loaded with ``LazyConfig``, swapped to ``H3L1-(2+1)x3`` (and, for
DINO, KDA in the decoder too), shrunk for the CPU (a batch of two padded images of
about 128x160, few queries, random backbone: ``train.init_checkpoint`` is never
loaded), instantiated, and run in training mode with dummy targets, forward and
backward; DINO 5scale with ``H3L2-(2+1)x2``. Checked: the encoder is a LiteEncoder
whose attentions kept their own initialisation through detrex's ``init_weights``,
every encoder parameter gets a gradient, eval forward detects; a standard swap with
converted weights leaves DINO's detections unchanged; the swapped model node survives
LazyConfig save/load; and ``lite_detr_plugin.encoders.inputs.detrex_encoder_kwargs`` reproduces
the keywords DINO really passes to its encoder.
"""
import copy
import os

import pytest
import torch

from lite_detr_plugin import KeyAwareDeformableAttention, LiteEncoder, lite_encoder_from_detrex, swap_encoder

from ..helpers.modules import missing_gradients

pytestmark = pytest.mark.detrex

DINO = "projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py"
DINO_5SCALE = "projects/dino/configs/dino-resnet/dino_r50_5scale_12ep.py"
H_DETR = "projects/h_deformable_detr/configs/h_deformable_detr_r50_two_stage_12ep.py"
DEFORMABLE_DETR = "projects/deformable_detr/configs/deformable_detr_r50_50ep.py"
IMAGE_SIZES = ((128, 160), (112, 128))  # the second image is padded: masks matter


def shrink_dino(cfg):
    cfg.model.num_queries = 60  # two_stage_num_proposals = "${..num_queries}" <= number of tokens
    cfg.model.dn_number = 5
    cfg.model.select_box_nums_for_evaluation = 60


def shrink_h_detr(cfg):
    cfg.model.num_queries_one2one = 30
    cfg.model.num_queries_one2many = 60
    cfg.model.transformer.two_stage_num_proposals = 90  # one2one + one2many
    cfg.model.select_box_nums_for_evaluation = 30


def shrink_deformable_detr(cfg):
    cfg.model.num_queries = 60
    cfg.model.select_box_nums_for_evaluation = 60


# (config, shrink, variant, decoder_kda)
MODELS = {
    "dino": (DINO, shrink_dino, "H3L1-(2+1)x3", False),
    "dino-decoder_kda": (DINO, shrink_dino, "H3L1-(2+1)x3", True),
    "dino-5scale": (DINO_5SCALE, shrink_dino, "H3L2-(2+1)x2", False),
    "h_deformable_detr-two_stage": (H_DETR, shrink_h_detr, "H3L1-(2+1)x3", False),
    "deformable_detr": (DEFORMABLE_DETR, shrink_deformable_detr, "H3L1-(2+1)x3", False),
}


def _is_cuda(device):
    return (isinstance(device, str) and device.startswith("cuda")) or (
        isinstance(device, torch.device) and device.type == "cuda")


@pytest.fixture
def cpu_cuda_calls(monkeypatch):
    """WORKAROUND, until the projects issue fixes it on our side: detrex's DINO moves new
    tensors to the GPU unconditionally while building its denoising queries
    (``.cuda()`` and ``.to("cuda")``, dino.py:370-440) and in its criterion
    (dn_criterion.py:76-84). Without a GPU, ``Tensor.cuda`` becomes the identity and
    ``Tensor.to("cuda")`` stays on the CPU for the duration of the test."""
    if torch.cuda.is_available():
        return
    original_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        args = tuple("cpu" if _is_cuda(a) else a for a in args)
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = "cpu"
        return original_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
    monkeypatch.setattr(torch.Tensor, "to", to)


def load_config(detrex_root, path, shrink):
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(os.path.join(detrex_root, path))
    cfg.model.device = "cpu"
    cfg.train.device = "cpu"
    shrink(cfg)
    return cfg


def batched_inputs(with_targets):
    g = torch.Generator().manual_seed(0)
    from detectron2.structures import Boxes, Instances

    batch = []
    for h, w in IMAGE_SIZES:
        item = {"image": (torch.rand(3, h, w, generator=g) * 255).to(torch.uint8), "height": h, "width": w}
        if with_targets:
            instances = Instances((h, w))
            instances.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 70.0, 90.0], [40.0, 30.0, 110.0, 100.0]]))
            instances.gt_classes = torch.tensor([1, 7])
            item["instances"] = instances
        batch.append(item)
    return batch


def assert_initialised(attn):
    assert not attn.sampling_offsets.weight.any(), "sampling_offsets.weight lost its zero init"
    assert attn.sampling_offsets.bias.abs().max() > 0.5  # the direction grid, not xavier/zeros
    assert not attn.value_proj.bias.any() and not attn.output_proj.bias.any()


@pytest.mark.usefixtures("cpu_cuda_calls")
@pytest.mark.parametrize("path,shrink,variant,decoder_kda", list(MODELS.values()), ids=list(MODELS))
def test_swapped_model_trains_on_cpu(detrex_root, detrex_msda, path, shrink, variant, decoder_kda):
    from detectron2.config import instantiate

    cfg = load_config(detrex_root, path, shrink)
    assert swap_encoder(cfg, variant=variant, attention="kda", decoder_kda=decoder_kda) is cfg
    torch.manual_seed(0)
    model = instantiate(cfg.model)

    encoder = model.transformer.encoder
    assert isinstance(encoder, LiteEncoder) and encoder.variant == variant
    assert encoder.num_feature_levels == cfg.model.transformer.num_feature_levels
    assert model.transformer.embed_dim == encoder.embed_dim == 256
    for layer in encoder.layers:  # detrex's init_weights ran in the transformer's __init__
        assert isinstance(layer.self_attn, KeyAwareDeformableAttention)
        assert isinstance(layer.self_attn, detrex_msda)
        assert_initialised(layer.self_attn)
    decoder_attentions = [m for m in model.transformer.decoder.modules() if isinstance(m, detrex_msda)]
    assert decoder_attentions
    for attn in decoder_attentions:
        assert isinstance(attn, KeyAwareDeformableAttention) == decoder_kda
        assert_initialised(attn)

    model.train()
    losses = model(batched_inputs(with_targets=True))
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert missing_gradients(encoder) == []
    if decoder_kda:
        for attn in decoder_attentions:
            assert missing_gradients(attn) == []

    model.eval()
    with torch.no_grad():
        outputs = model(batched_inputs(with_targets=False))
    assert len(outputs) == 2 and len(outputs[0]["instances"]) > 0


@pytest.mark.usefixtures("cpu_cuda_calls")
def test_standard_swap_with_converted_weights_keeps_dino_detections(detrex_root, detrex_msda):
    """DINO with its encoder replaced by ``lite_encoder_from_detrex(encoder)`` detects the same."""
    from detectron2.config import instantiate

    cfg = load_config(detrex_root, DINO, shrink_dino)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    lite = copy.deepcopy(model)
    lite.transformer.encoder = lite_encoder_from_detrex(model.transformer.encoder)
    with torch.no_grad():
        expected = model(batched_inputs(with_targets=False))
        got = lite(batched_inputs(with_targets=False))
    for a, b in zip(expected, got):
        a, b = a["instances"], b["instances"]
        torch.testing.assert_close(b.scores, a.scores, atol=1e-4, rtol=0)
        torch.testing.assert_close(b.pred_boxes.tensor, a.pred_boxes.tensor, atol=1e-2, rtol=0)
        assert torch.equal(b.pred_classes, a.pred_classes)


class _Captured(Exception):
    pass


@pytest.mark.usefixtures("cpu_cuda_calls")
@pytest.mark.parametrize("path,num_levels", [(DINO, 4), (DINO_5SCALE, 5)], ids=["4scale", "5scale"])
def test_testing_helper_reproduces_dinos_encoder_call(detrex_root, detrex_msda, path, num_levels):
    """``detrex_encoder_kwargs`` gives what DINO really passes its encoder (a padded training
    batch): same keywords, shapes, dtypes, masks, level layout, valid ratios, reference
    points, and query_pos = sine embedding + level_embeds."""
    from detectron2.config import instantiate

    from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs, image_masks, level_masks, sine_position_embedding

    cfg = load_config(detrex_root, path, shrink_dino)
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    captured = {}

    def grab_canvas(module, args):
        captured["canvas"] = tuple(args[0].shape[-2:])

    def grab_call(module, args, kwargs):
        captured["args"], captured["kwargs"] = args, kwargs
        raise _Captured

    model.backbone.register_forward_pre_hook(grab_canvas)
    model.transformer.encoder.register_forward_pre_hook(grab_call, with_kwargs=True)
    with pytest.raises(_Captured):
        model(batched_inputs(with_targets=True))
    real = captured["kwargs"]
    assert captured["args"] == ()  # detrex calls its encoder with keywords only
    ours = detrex_encoder_kwargs(list(IMAGE_SIZES), canvas=captured["canvas"], num_levels=num_levels, embed_dim=256)
    assert list(real) == list(ours)
    for name, value in ours.items():
        if value is None:
            assert real[name] is None, name
            continue
        assert real[name].shape == value.shape and real[name].dtype == value.dtype, name
    for name in ("query_key_padding_mask", "spatial_shapes", "level_start_index", "valid_ratios",
                 "reference_points"):
        torch.testing.assert_close(real[name], ours[name], atol=0, rtol=0, msg=name)
    assert real["query_key_padding_mask"].any()
    # query_pos: the sine embedding of each level's mask plus that level's embedding
    shapes = [tuple(s) for s in real["spatial_shapes"].tolist()]
    masks = level_masks(image_masks(list(IMAGE_SIZES), captured["canvas"]), shapes)
    sine = torch.cat([sine_position_embedding(m, num_pos_feats=128).flatten(2).transpose(1, 2) for m in masks], 1)
    starts = real["level_start_index"].tolist() + [real["query"].shape[1]]
    level_embeds = torch.cat([model.transformer.level_embeds[level].expand(starts[level + 1] - starts[level], -1)
                              for level in range(num_levels)])
    torch.testing.assert_close(real["query_pos"], sine + level_embeds.detach(), atol=1e-5, rtol=0)


def test_swapped_model_config_saves_and_loads(detrex_root, detrex_msda, tmp_path):
    """The swapped ``model`` node survives ``LazyConfig.save``/``load`` as YAML (as train_net
    saves it) and instantiates with KDA in the decoder. (detrex's full configs hold lambdas
    in their optimizer settings, so only the model node is saved here.)"""
    from detectron2.config import LazyConfig, instantiate
    from omegaconf import OmegaConf

    cfg = load_config(detrex_root, DINO, shrink_dino)
    swap_encoder(cfg, variant="H3L1-(2+1)x3", decoder_kda=True, low_query_mode="paper")
    path = str(tmp_path / "model.yaml")
    LazyConfig.save(OmegaConf.create({"model": cfg.model}, flags={"allow_objects": True}), path)
    assert not (tmp_path / "model.yaml.pkl").exists(), "LazyConfig fell back to pickle"
    loaded = LazyConfig.load(path)
    model = instantiate(loaded.model)
    assert isinstance(model.transformer.encoder, LiteEncoder)
    assert model.transformer.encoder.low_query_mode == "paper"
    assert any(isinstance(m, KeyAwareDeformableAttention) for m in model.transformer.decoder.modules())
