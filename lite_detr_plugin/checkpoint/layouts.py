"""Parameter layouts (state-dict name -> shape) of the released Lite-DINO R50 and of its detrex port.

The released Lite-DETR checkpoints (``r50_s2ex3``, ``r50_s3ex1``, ``r50_s3ex3`` from
IDEA-Research/Lite-DETR) hold the state dict of its DINO model, 4 feature levels,
ResNet-50 with frozen BN (torchvision names under ``backbone.0.body``), two-stage
"standard", 900 queries, 6 decoder layers, key-aware deformable attention in the
encoder and in the decoder cross-attention (no ``attention_weights``, no
``key_proj``), the light FFN (``linear12``/``linear22``/``norm22``) in the last
encoder layer of each block, and class heads of 91 rows (COCO category ids).

The detrex port is detrex's DINO R50 4-scale with the encoder replaced by
:class:`lite_detr_plugin.LiteEncoder` (``low_query_mode="released"``) and the
decoder cross-attention by :class:`lite_detr_plugin.KeyAwareDeformableAttention`
(``swap_encoder(cfg, variant, attention="kda", decoder_kda=True)``).

Both layouts are written out here so the converter can check a conversion
without detrex installed; the tests compare them with key lists dumped from the
instantiated models.
"""
from collections import OrderedDict
from typing import Dict, Tuple, Union

from ..encoders.variants import LiteVariant, parse_variant

Layout = Dict[str, Tuple[int, ...]]

FROZEN_BN = ("weight", "bias", "running_mean", "running_var")
# ResNet-50: (blocks, bottleneck width, output width) of each stage, input width of the first one.
R50_STAGES = ((3, 64, 256), (4, 128, 512), (6, 256, 1024), (3, 512, 2048))
R50_STEM = 64

EMBED_DIM = 256
FFN_DIM = 2048
NUM_HEADS = 8
NUM_LEVELS = 4
NUM_POINTS = 4
NUM_QUERIES = 900
NUM_DECODER_LAYERS = 6
OFFICIAL_NUM_CLASSES = 91  # COCO category ids 0..90, as the released DINO config sets
NECK_IN_CHANNELS = (512, 1024, 2048)  # res3, res4, res5


def as_variant(variant: Union[str, LiteVariant]) -> LiteVariant:
    return variant if isinstance(variant, LiteVariant) else parse_variant(variant)


def light_layer_indices(variant: Union[str, LiteVariant]):
    """Indices of the encoder layers that carry the light FFN: the last of each block."""
    v = as_variant(variant)
    per_block = v.num_high_updates + 1
    return [per_block * (block + 1) - 1 for block in range(v.num_blocks)]


def _linear(layout: Layout, name: str, out_features: int, in_features: int) -> None:
    layout[f"{name}.weight"] = (out_features, in_features)
    layout[f"{name}.bias"] = (out_features,)


def _norm(layout: Layout, name: str, dim: int) -> None:
    layout[f"{name}.weight"] = (dim,)
    layout[f"{name}.bias"] = (dim,)


def _frozen_bn(layout: Layout, name: str, dim: int) -> None:
    for field in FROZEN_BN:
        layout[f"{name}.{field}"] = (dim,)


def _mlp(layout: Layout, name: str, dims) -> None:
    for index, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        _linear(layout, f"{name}.layers.{index}", d_out, d_in)


def _kda(layout: Layout, name: str, order) -> None:
    offsets = NUM_HEADS * NUM_LEVELS * NUM_POINTS * 2
    for part in order:
        _linear(layout, f"{name}.{part}", offsets if part == "sampling_offsets" else EMBED_DIM, EMBED_DIM)


def _resnet50(layout: Layout, official: bool) -> None:
    """torchvision names (official) or detectron2 names (detrex) of ResNet-50 with frozen BN."""
    if official:
        layout["backbone.0.body.conv1.weight"] = (R50_STEM, 3, 7, 7)
        _frozen_bn(layout, "backbone.0.body.bn1", R50_STEM)
    else:
        layout["backbone.stem.conv1.weight"] = (R50_STEM, 3, 7, 7)
        _frozen_bn(layout, "backbone.stem.conv1.norm", R50_STEM)
    in_dim = R50_STEM
    for stage, (blocks, mid, out) in enumerate(R50_STAGES):
        for block in range(blocks):
            block_in = in_dim if block == 0 else out
            convs = ((mid, block_in, 1), (mid, mid, 3), (out, mid, 1))
            if official:
                prefix = f"backbone.0.body.layer{stage + 1}.{block}"
                for k, (c_out, c_in, size) in enumerate(convs, start=1):
                    layout[f"{prefix}.conv{k}.weight"] = (c_out, c_in, size, size)
                    _frozen_bn(layout, f"{prefix}.bn{k}", c_out)
                if block == 0:
                    layout[f"{prefix}.downsample.0.weight"] = (out, block_in, 1, 1)
                    _frozen_bn(layout, f"{prefix}.downsample.1", out)
            else:
                prefix = f"backbone.res{stage + 2}.{block}"
                if block == 0:
                    layout[f"{prefix}.shortcut.weight"] = (out, block_in, 1, 1)
                    _frozen_bn(layout, f"{prefix}.shortcut.norm", out)
                for k, (c_out, c_in, size) in enumerate(convs, start=1):
                    layout[f"{prefix}.conv{k}.weight"] = (c_out, c_in, size, size)
                    _frozen_bn(layout, f"{prefix}.conv{k}.norm", c_out)
        in_dim = out


def official_layout(
    variant: Union[str, LiteVariant], num_classes: int = OFFICIAL_NUM_CLASSES, dn_labelbook_size: int = None
) -> Layout:
    """The state-dict layout of the released Lite-DINO R50 model for ``variant``.

    Args:
        variant: ``"H3L1-(2+1)x3"``-style; only A and B change the layout (the
            number of encoder layers and where ``linear12`` sits), not H.
        num_classes: rows of the class heads (91 in the released COCO models).
        dn_labelbook_size: ``label_enc`` has ``dn_labelbook_size + 1`` rows;
            defaults to ``num_classes``.
    """
    v = as_variant(variant)
    labelbook = num_classes if dn_labelbook_size is None else dn_labelbook_size
    layout: Layout = OrderedDict()
    layout["transformer.level_embed"] = (NUM_LEVELS, EMBED_DIM)
    light = set(light_layer_indices(v))
    for index in range(v.num_layers):
        p = f"transformer.encoder.layers.{index}"
        _kda(layout, f"{p}.self_attn", ("sampling_offsets", "value_proj", "query_proj", "output_proj"))
        _norm(layout, f"{p}.norm1", EMBED_DIM)
        _linear(layout, f"{p}.linear1", FFN_DIM, EMBED_DIM)
        _linear(layout, f"{p}.linear2", EMBED_DIM, FFN_DIM)
        _norm(layout, f"{p}.norm2", EMBED_DIM)
        if index in light:  # the light FFN's hidden width is d_model (= FFN_DIM / 8)
            _linear(layout, f"{p}.linear12", EMBED_DIM, EMBED_DIM)
            _linear(layout, f"{p}.linear22", EMBED_DIM, EMBED_DIM)
            _norm(layout, f"{p}.norm22", EMBED_DIM)
    for index in range(NUM_DECODER_LAYERS):
        p = f"transformer.decoder.layers.{index}"
        _kda(layout, f"{p}.cross_attn", ("sampling_offsets", "value_proj", "query_proj", "output_proj"))
        _norm(layout, f"{p}.norm1", EMBED_DIM)
        layout[f"{p}.self_attn.in_proj_weight"] = (3 * EMBED_DIM, EMBED_DIM)
        layout[f"{p}.self_attn.in_proj_bias"] = (3 * EMBED_DIM,)
        _linear(layout, f"{p}.self_attn.out_proj", EMBED_DIM, EMBED_DIM)
        _norm(layout, f"{p}.norm2", EMBED_DIM)
        _linear(layout, f"{p}.linear1", FFN_DIM, EMBED_DIM)
        _linear(layout, f"{p}.linear2", EMBED_DIM, FFN_DIM)
        _norm(layout, f"{p}.norm3", EMBED_DIM)
    _norm(layout, "transformer.decoder.norm", EMBED_DIM)
    _mlp(layout, "transformer.decoder.ref_point_head", (2 * EMBED_DIM, EMBED_DIM, EMBED_DIM))
    for index in range(NUM_DECODER_LAYERS):
        _mlp(layout, f"transformer.decoder.bbox_embed.{index}", (EMBED_DIM, EMBED_DIM, EMBED_DIM, 4))
    for index in range(NUM_DECODER_LAYERS):
        _linear(layout, f"transformer.decoder.class_embed.{index}", num_classes, EMBED_DIM)
    layout["transformer.tgt_embed.weight"] = (NUM_QUERIES, EMBED_DIM)
    _linear(layout, "transformer.enc_output", EMBED_DIM, EMBED_DIM)
    _norm(layout, "transformer.enc_output_norm", EMBED_DIM)
    _mlp(layout, "transformer.enc_out_bbox_embed", (EMBED_DIM, EMBED_DIM, EMBED_DIM, 4))
    _linear(layout, "transformer.enc_out_class_embed", num_classes, EMBED_DIM)
    layout["label_enc.weight"] = (labelbook + 1, EMBED_DIM)
    for index, channels in enumerate(NECK_IN_CHANNELS):
        layout[f"input_proj.{index}.0.weight"] = (EMBED_DIM, channels, 1, 1)
        layout[f"input_proj.{index}.0.bias"] = (EMBED_DIM,)
        _norm(layout, f"input_proj.{index}.1", EMBED_DIM)
    extra = len(NECK_IN_CHANNELS)
    layout[f"input_proj.{extra}.0.weight"] = (EMBED_DIM, NECK_IN_CHANNELS[-1], 3, 3)
    layout[f"input_proj.{extra}.0.bias"] = (EMBED_DIM,)
    _norm(layout, f"input_proj.{extra}.1", EMBED_DIM)
    _resnet50(layout, official=True)
    for index in range(NUM_DECODER_LAYERS):
        _mlp(layout, f"bbox_embed.{index}", (EMBED_DIM, EMBED_DIM, EMBED_DIM, 4))
    for index in range(NUM_DECODER_LAYERS):
        _linear(layout, f"class_embed.{index}", num_classes, EMBED_DIM)
    return layout


def lite_dino_layout(variant: Union[str, LiteVariant], num_classes: int = 80) -> Layout:
    """The state-dict layout of detrex's DINO R50 4-scale with the Lite encoder and KDA decoder.

    That is ``swap_encoder(cfg, variant, attention="kda", decoder_kda=True)`` on
    ``projects/dino/configs/dino-resnet/dino_r50_4scale_*.py`` (``low_query_mode="released"``,
    ``feedforward_dim=2048``, light FFN hidden width 2048 / 8 = 256). detrex keeps
    ``num_decoder_layers + 1`` unshared heads, the last one for the two-stage proposals.
    """
    v = as_variant(variant)
    layout: Layout = OrderedDict()
    _resnet50(layout, official=False)
    for index, channels in enumerate(NECK_IN_CHANNELS):
        layout[f"neck.convs.{index}.conv.weight"] = (EMBED_DIM, channels, 1, 1)
        layout[f"neck.convs.{index}.conv.bias"] = (EMBED_DIM,)
        _norm(layout, f"neck.convs.{index}.norm", EMBED_DIM)
    layout["neck.extra_convs.0.conv.weight"] = (EMBED_DIM, NECK_IN_CHANNELS[-1], 3, 3)
    layout["neck.extra_convs.0.conv.bias"] = (EMBED_DIM,)
    _norm(layout, "neck.extra_convs.0.norm", EMBED_DIM)
    layout["transformer.level_embeds"] = (NUM_LEVELS, EMBED_DIM)
    light = set(light_layer_indices(v))
    for index in range(v.num_layers):
        p = f"transformer.encoder.layers.{index}"
        _kda(layout, f"{p}.self_attn", ("sampling_offsets", "value_proj", "output_proj", "query_proj"))
        _norm(layout, f"{p}.norm1", EMBED_DIM)
        _linear(layout, f"{p}.ffn.fc1", FFN_DIM, EMBED_DIM)
        _linear(layout, f"{p}.ffn.fc2", EMBED_DIM, FFN_DIM)
        _norm(layout, f"{p}.norm2", EMBED_DIM)
        if index in light:
            _linear(layout, f"{p}.light_ffn.fc1", FFN_DIM // 8, EMBED_DIM)
            _linear(layout, f"{p}.light_ffn.fc2", EMBED_DIM, FFN_DIM // 8)
            _norm(layout, f"{p}.light_norm", EMBED_DIM)
    for index in range(NUM_DECODER_LAYERS):
        p = f"transformer.decoder.layers.{index}"
        layout[f"{p}.attentions.0.attn.in_proj_weight"] = (3 * EMBED_DIM, EMBED_DIM)
        layout[f"{p}.attentions.0.attn.in_proj_bias"] = (3 * EMBED_DIM,)
        _linear(layout, f"{p}.attentions.0.attn.out_proj", EMBED_DIM, EMBED_DIM)
        _kda(layout, f"{p}.attentions.1", ("sampling_offsets", "value_proj", "output_proj", "query_proj"))
        _linear(layout, f"{p}.ffns.0.layers.0.0", FFN_DIM, EMBED_DIM)
        _linear(layout, f"{p}.ffns.0.layers.1", EMBED_DIM, FFN_DIM)
        for norm in range(3):
            _norm(layout, f"{p}.norms.{norm}", EMBED_DIM)
    _mlp(layout, "transformer.decoder.ref_point_head", (2 * EMBED_DIM, EMBED_DIM, EMBED_DIM))
    _norm(layout, "transformer.decoder.norm", EMBED_DIM)
    num_heads_out = NUM_DECODER_LAYERS + 1
    for index in range(num_heads_out):
        _linear(layout, f"transformer.decoder.class_embed.{index}", num_classes, EMBED_DIM)
    for index in range(num_heads_out):
        _mlp(layout, f"transformer.decoder.bbox_embed.{index}", (EMBED_DIM, EMBED_DIM, EMBED_DIM, 4))
    layout["transformer.tgt_embed.weight"] = (NUM_QUERIES, EMBED_DIM)
    _linear(layout, "transformer.enc_output", EMBED_DIM, EMBED_DIM)
    _norm(layout, "transformer.enc_output_norm", EMBED_DIM)
    for index in range(num_heads_out):
        _linear(layout, f"class_embed.{index}", num_classes, EMBED_DIM)
    for index in range(num_heads_out):
        _mlp(layout, f"bbox_embed.{index}", (EMBED_DIM, EMBED_DIM, EMBED_DIM, 4))
    layout["label_enc.weight"] = (num_classes, EMBED_DIM)
    return layout
