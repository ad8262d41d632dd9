"""LiteEncoder called exactly as detrex's DINO / H-DETR / Deformable DETR transformers call their encoder.

See /work/shared/docs/detrex-contract.md §1-2: constructor keywords of the three
encoders, the keyword call with ``key=value=None``, one ``[bs, N, C]`` tensor back
in the input token order.
"""
import pytest
import torch
import torch.nn.functional as F

from lite_detr_plugin import LiteEncoder
from lite_detr_plugin.encoders import LiteEncoderLayer
from lite_detr_plugin.layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs

from .helpers import PAPER_VARIANTS_4, VARIANTS_5, load_shared, make_encoder, make_inputs, num_low_tokens

# The encoder entries of detrex's model configs (contract §4), as LazyConfig passes them
# once "${..num_feature_levels}" is resolved.
DETREX_ENCODER_CONFIGS = {
    "dino_r50": dict(embed_dim=256, num_heads=8, feedforward_dim=2048, attn_dropout=0.0, ffn_dropout=0.0,
                     num_layers=6, post_norm=False, num_feature_levels=4, use_checkpoint=False),
    "deformable_detr_r50": dict(embed_dim=256, num_heads=8, feedforward_dim=1024, attn_dropout=0.1,
                                ffn_dropout=0.1, num_layers=6, post_norm=False, num_feature_levels=4),
    "h_deformable_detr_r50": dict(embed_dim=256, num_heads=8, feedforward_dim=2048, attn_dropout=0.0,
                                  ffn_dropout=0.0, num_layers=6, post_norm=False, num_feature_levels=4),
}


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize("config", sorted(DETREX_ENCODER_CONFIGS))
def test_accepts_detrex_encoder_keywords_standard(config):
    kwargs = DETREX_ENCODER_CONFIGS[config]
    encoder = LiteEncoder(**kwargs, variant="standard", attention="msda")
    assert encoder.embed_dim == 256 and isinstance(encoder.embed_dim, int)
    assert encoder.num_layers == 6 and len(encoder.layers) == 6
    assert encoder.pre_norm is False
    assert encoder.post_norm_layer is None
    first = encoder.layers[0]
    assert first.ffn.fc1.out_features == kwargs["feedforward_dim"]
    assert first.self_attn.dropout.p == kwargs["attn_dropout"]
    assert first.ffn.dropout1.p == kwargs["ffn_dropout"]
    assert isinstance(first.self_attn, MultiScaleDeformableAttention)
    assert first.self_attn.num_levels == 4 and first.self_attn.batch_first


@pytest.mark.parametrize("config", sorted(DETREX_ENCODER_CONFIGS))
def test_accepts_detrex_encoder_keywords_lite(config):
    kwargs = dict(DETREX_ENCODER_CONFIGS[config])
    kwargs["num_layers"] = 9  # (A+1)*B of H3L1-(2+1)x3; detrex's 6 would contradict it (see test_variants)
    encoder = LiteEncoder(**kwargs, variant="H3L1-(2+1)x3", attention="kda", low_query_mode="paper",
                          value_placement="samples", low_ffn_ratio=8)
    assert encoder.num_layers == 9 and len(encoder.layers) == 9
    assert encoder.variant == "H3L1-(2+1)x3"
    low = encoder.layers[2]
    assert low.ffn is None and low.light_ffn.fc1.out_features == kwargs["feedforward_dim"] // 8
    assert all(isinstance(layer.self_attn, KeyAwareDeformableAttention) for layer in encoder.layers)
    assert all(layer.self_attn.value_placement == "samples" for layer in encoder.layers)


def test_lite_keywords_equal_the_variant_string():
    by_string = LiteEncoder(embed_dim=32, num_heads=4, feedforward_dim=64, variant="H2L2-(3+1)x2")
    by_keywords = LiteEncoder(embed_dim=32, num_heads=4, feedforward_dim=64, num_high_levels=2,
                              num_high_updates=3, num_blocks=2)
    assert by_string.variant == by_keywords.variant == "H2L2-(3+1)x2"
    assert by_keywords.num_layers == 8
    assert [n for n, _ in by_string.named_parameters()] == [n for n, _ in by_keywords.named_parameters()]


@pytest.mark.parametrize("mode", ["released", "paper"])
@pytest.mark.parametrize("ratio", [1, 4, 8])
def test_layer_layout(mode, ratio):
    encoder = LiteEncoder(embed_dim=32, num_heads=4, feedforward_dim=64, variant="H3L1-(2+1)x2",
                          low_query_mode=mode, low_ffn_ratio=ratio)
    kinds = []
    for layer in encoder.layers:
        assert isinstance(layer, LiteEncoderLayer)
        if layer.light_ffn is None:
            kinds.append("high")
            assert layer.ffn.fc1.out_features == 64
        else:
            kinds.append("low")
            assert layer.light_ffn.fc1.out_features == 64 // ratio
            assert (layer.ffn is not None) == (mode == "released")
    assert kinds == ["high", "high", "low"] * 2


@pytest.mark.parametrize("attention,cls", [("kda", KeyAwareDeformableAttention),
                                           ("msda", MultiScaleDeformableAttention)])
def test_attention_choice(attention, cls):
    encoder = LiteEncoder(embed_dim=32, num_heads=4, feedforward_dim=64, attention=attention)
    other = MultiScaleDeformableAttention if cls is KeyAwareDeformableAttention else KeyAwareDeformableAttention
    # isinstance: with detrex imported the instances are of a subclass that also derives from detrex's MSDA
    assert all(isinstance(layer.self_attn, cls) and not isinstance(layer.self_attn, other) for layer in encoder.layers)


# ------------------------------------------------------------------ the call


@pytest.mark.parametrize("variant", ["standard", "H3L1-(2+1)x3"])
@pytest.mark.parametrize("bs", [1, 3])
def test_forward_with_detrex_call(variant, bs):
    """The call of dino_transformer.py line 405, keyword for keyword, float32 as in detrex."""
    encoder = make_encoder(variant, dtype=torch.float32)
    images = [(64, 96), (40, 64), (64, 50)][:bs]
    kwargs = detrex_encoder_kwargs(images, num_levels=4, embed_dim=32)
    memory = encoder(
        query=kwargs["query"], key=None, value=None, query_pos=kwargs["query_pos"],
        query_key_padding_mask=kwargs["query_key_padding_mask"], spatial_shapes=kwargs["spatial_shapes"],
        reference_points=kwargs["reference_points"], level_start_index=kwargs["level_start_index"],
        valid_ratios=kwargs["valid_ratios"],
    )
    assert type(memory) is torch.Tensor  # detrex does `bs, _, c = memory.shape`
    assert memory.shape == (bs, 128, 32) and memory.dtype == torch.float32
    assert torch.isfinite(memory).all()


def test_forward_absorbs_detrex_extras():
    """``BaseTransformerLayer``-style extras (key_pos, attn_masks, key_padding_mask, unknown kwargs) are ignored."""
    encoder = make_encoder("H3L1-(2+1)x3")
    inputs = make_inputs(4)
    with torch.no_grad():
        plain = encoder(**inputs)
        extra = encoder(**inputs, key_pos=None, attn_masks=None, key_padding_mask=None, some_future_kwarg=1)
    assert torch.equal(plain, extra)


def test_output_keeps_token_order():
    """With zero attention outputs and zero FFN outputs each layer is a LayerNorm of its
    input rows, so the output must be LayerNorm(query) row by row (LN is idempotent)."""
    encoder = LiteEncoder(embed_dim=32, num_heads=4, feedforward_dim=64, num_points=2, variant="H2L2-(2+1)x2",
                          low_query_mode="released").double().eval()
    with torch.no_grad():
        for layer in encoder.layers:
            layer.self_attn.output_proj.weight.zero_()
            layer.self_attn.output_proj.bias.zero_()
            for ffn in (layer.ffn, layer.light_ffn):
                if ffn is not None:
                    ffn.fc2.weight.zero_()
                    ffn.fc2.bias.zero_()
    inputs = make_inputs(4)
    with torch.no_grad():
        out = encoder(**inputs)
    expected = F.layer_norm(inputs["query"], (32,), eps=1e-5)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)
    # a shuffled output would be far off
    assert (out - expected.flip(1)).abs().max() > 1


# ------------------------------------------------------ which layers update which tokens


def _record_layer_io(encoder):
    """Hooks every layer; returns a list filled with (layer index, value it reads, output)."""
    records = []

    def hook(index):
        def fn(module, args, kwargs, output):
            value = args[1] if len(args) > 1 else kwargs["value"]
            records.append((index, value.detach().clone(), output.detach().clone()))
        return fn

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(encoder.layers)]
    return records, handles


@pytest.mark.parametrize("mode", ["released", "paper"])
@pytest.mark.parametrize("variant", ["H3L1-(2+1)x3", "H2L2-(3+1)x2", "H3L2-(2+1)x2"])
def test_high_level_layers_change_only_high_level_tokens(variant, mode):
    encoder = make_encoder(variant, low_query_mode=mode)
    inputs = make_inputs(encoder.num_feature_levels)
    num_low = num_low_tokens(inputs, encoder.lite.num_high_levels)
    N = inputs["query"].shape[1]
    records, handles = _record_layer_io(encoder)
    with torch.no_grad():
        out = encoder(**inputs)
    for handle in handles:
        handle.remove()
    assert [r[0] for r in records] == list(range(len(encoder.layers)))
    # the state each layer reads, then the final output
    states = [r[1] for r in records] + [out]
    assert torch.equal(states[0], inputs["query"])
    per_block = encoder.lite.num_high_updates + 1
    for index, (_, before, output) in enumerate(records):
        after = states[index + 1]
        low_same = torch.equal(after[:, :num_low], before[:, :num_low])
        high_same = torch.equal(after[:, num_low:], before[:, num_low:])
        if (index + 1) % per_block:  # high-level layer: queries are the high tokens only
            assert output.shape[1] == N - num_low, f"layer {index} queried {output.shape[1]} tokens"
            assert low_same, f"high-level layer {index} changed low-level tokens"
            assert not high_same, f"high-level layer {index} left the high-level tokens unchanged"
        elif mode == "paper":  # eq. (2): low tokens query, high tokens pass through
            assert output.shape[1] == num_low
            assert high_same, f"paper low-level layer {index} changed high-level tokens"
            assert not low_same
        else:  # released: every token queries
            assert output.shape[1] == N
            assert not high_same and not low_same


def test_paper_low_level_layer_weights_do_not_reach_high_tokens():
    """Black box: changing only the last (low-level) layer's weights changes only the low tokens in paper mode."""
    encoder = make_encoder("H3L1-(2+1)x2", low_query_mode="paper")
    other = make_encoder("H3L1-(2+1)x2", low_query_mode="paper")
    load_shared(other, encoder)
    with torch.no_grad():
        for parameter in other.layers[-1].parameters():
            parameter.add_(0.1)
    inputs = make_inputs(4)
    num_low = num_low_tokens(inputs, 3)
    with torch.no_grad():
        a, b = encoder(**inputs), other(**inputs)
    assert torch.equal(a[:, num_low:], b[:, num_low:])
    assert (a[:, :num_low] - b[:, :num_low]).abs().max() > 1e-3


# ------------------------------------------------------------------ padding masks


@pytest.mark.parametrize("placement", ["tokens", "samples"])
@pytest.mark.parametrize("attention", ["kda", "msda"])
@pytest.mark.parametrize("variant,mode", [("H3L1-(2+1)x3", "released"), ("H3L1-(2+1)x3", "paper"),
                                          ("H3L2-(2+1)x2", "paper"), ("standard", "released")])
def test_padded_tokens_do_not_influence_valid_tokens(variant, mode, attention, placement):
    encoder = make_encoder(variant, low_query_mode=mode, attention=attention, value_placement=placement)
    inputs = make_inputs(encoder.num_feature_levels)
    mask = inputs["query_key_padding_mask"]
    assert mask.any()
    perturbed = dict(inputs)
    noise = torch.randn(inputs["query"].shape, dtype=torch.float64) * 100
    perturbed["query"] = torch.where(mask[..., None], inputs["query"] + noise, inputs["query"])
    with torch.no_grad():
        out, out_perturbed = encoder(**inputs), encoder(**perturbed)
    valid = ~mask
    torch.testing.assert_close(out_perturbed[valid], out[valid], atol=1e-9, rtol=0)
    assert torch.isfinite(out_perturbed).all()
    # the padded rows themselves are queries, so they do change: the perturbation was seen
    assert (out_perturbed[mask] - out[mask]).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["released", "paper"])
def test_mask_matters(mode):
    """The same padded batch without its mask gives other outputs at valid tokens."""
    encoder = make_encoder("H3L1-(2+1)x3", low_query_mode=mode)
    inputs = make_inputs(4)
    mask = inputs["query_key_padding_mask"]
    with torch.no_grad():
        masked = encoder(**inputs)
        unmasked = encoder(**dict(inputs, query_key_padding_mask=None))
    assert (masked[~mask] - unmasked[~mask]).abs().max() > 1e-4


def test_all_false_mask_equals_no_mask():
    encoder = make_encoder("H3L1-(2+1)x3")
    inputs = make_inputs(4, images=((64, 96), (64, 96)))
    assert not inputs["query_key_padding_mask"].any()
    with torch.no_grad():
        a = encoder(**inputs)
        b = encoder(**dict(inputs, query_key_padding_mask=None))
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


# ------------------------------------------------------------------ levels


@pytest.mark.parametrize("variant", VARIANTS_5)
def test_five_levels(variant):
    encoder = make_encoder(variant, dtype=torch.float32)
    inputs = detrex_encoder_kwargs([(64, 96), (40, 64)], num_levels=5, embed_dim=32)
    assert inputs["spatial_shapes"].tolist() == [[16, 24], [8, 12], [4, 6], [2, 3], [1, 2]]
    out = encoder(**inputs)
    assert out.shape == (2, 512, 32)


@pytest.mark.parametrize("variant", ["standard"] + list(PAPER_VARIANTS_4))
def test_wrong_number_of_levels_is_a_value_error(variant):
    encoder = make_encoder(variant, dtype=torch.float32)
    inputs = detrex_encoder_kwargs([(64, 96)], num_levels=5, embed_dim=32)
    with pytest.raises(ValueError, match="num_feature_levels=4"):
        encoder(**inputs)


def test_missing_geometry_is_a_value_error():
    encoder = make_encoder("H3L1-(2+1)x3")
    inputs = make_inputs(4)
    with pytest.raises(ValueError, match="spatial_shapes, level_start_index and reference_points"):
        encoder(**dict(inputs, reference_points=None))
