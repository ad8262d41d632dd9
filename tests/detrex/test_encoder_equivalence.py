"""detrex's standard deformable encoders and MSDA vs ours holding their weights.

(a) of the issue: DINO / Deformable DETR / H-DETR encoders with random weights,
converted by ``lite_encoder_from_detrex``, on detrex-shaped padded inputs. On CPU
detrex's MSDA runs its ``grid_sample`` path (``multi_scale_deformable_attn_pytorch``).
"""
import importlib

import pytest
import torch

from lite_detr_plugin import LiteEncoder, lite_encoder_from_detrex
from lite_detr_plugin.layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs

from ..helpers.fake_detrex import hide_detrex
from ..helpers.modules import perturb_parameters_

pytestmark = pytest.mark.detrex

ENCODERS = {
    "dino": ("projects.dino.modeling.dino_transformer", "DINOTransformerEncoder"),
    "deformable_detr": ("projects.deformable_detr.modeling.deformable_transformer", "DeformableDetrTransformerEncoder"),
    "h_deformable_detr": ("projects.h_deformable_detr.modeling.h_deformable_transformer",
                          "HDeformableDetrTransformerEncoder"),
}
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def build_detrex_encoder(name, num_levels, post_norm, dtype, **sizes):
    module, cls = ENCODERS[name]
    encoder_cls = getattr(importlib.import_module(module), cls)
    kwargs = dict(embed_dim=32, num_heads=4, feedforward_dim=64, attn_dropout=0.0, ffn_dropout=0.0, num_layers=3,
                  post_norm=post_norm, num_feature_levels=num_levels)
    kwargs.update(sizes)
    if name == "dino":
        kwargs["use_checkpoint"] = False
    torch.manual_seed(0)
    encoder = encoder_cls(**kwargs)
    perturb_parameters_(encoder, std=0.05)
    return encoder.to(dtype).eval()


def inputs_for(num_levels, dtype, embed_dim=32, requires_grad=False):
    inputs = detrex_encoder_kwargs([(64, 96), (40, 64), (64, 50)], num_levels=num_levels, embed_dim=embed_dim)
    for name in ("query", "query_pos"):
        inputs[name] = inputs[name].to(dtype).requires_grad_(requires_grad)
    return inputs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("post_norm", [False, True], ids=["", "post_norm"])
@pytest.mark.parametrize("num_levels", [4, 5])
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_converted_encoder_matches_detrex(detrex_msda, name, num_levels, post_norm, dtype):
    detrex_encoder = build_detrex_encoder(name, num_levels, post_norm, dtype)
    lite = lite_encoder_from_detrex(detrex_encoder)
    assert isinstance(lite, LiteEncoder) and lite.variant == "standard" and lite.attention == "msda"
    assert lite.num_layers == 3 and lite.num_feature_levels == num_levels
    assert (lite.post_norm_layer is not None) == post_norm
    assert next(lite.parameters()).dtype == dtype
    inputs = inputs_for(num_levels, dtype, requires_grad=True)
    expected = detrex_encoder(**inputs)
    weights = torch.randn(expected.shape, dtype=torch.float64).to(dtype)
    (expected * weights).sum().backward()
    expected_grads = [inputs[k].grad.clone() for k in ("query", "query_pos")]
    for k in ("query", "query_pos"):
        inputs[k].grad = None
    out = lite(**inputs)
    (out * weights).sum().backward()
    tol = TOL[dtype]
    torch.testing.assert_close(out, expected, atol=tol, rtol=0)
    for got, want in zip([inputs[k].grad for k in ("query", "query_pos")], expected_grads):
        torch.testing.assert_close(got, want, atol=tol * 10, rtol=tol * 10)
    assert (out - detrex_encoder.layers[0](inputs["query"], None, None, query_pos=inputs["query_pos"],
                                           query_key_padding_mask=inputs["query_key_padding_mask"],
                                           spatial_shapes=inputs["spatial_shapes"],
                                           reference_points=inputs["reference_points"],
                                           level_start_index=inputs["level_start_index"])).abs().max() > 1e-2


def test_dino_defaults_full_width(detrex_msda):
    """DINO's real sizes (C=256, 8 heads, FFN 2048, 6 layers), float32."""
    detrex_encoder = build_detrex_encoder("dino", 4, False, torch.float32, embed_dim=256, num_heads=8,
                                          feedforward_dim=2048, num_layers=6)
    lite = lite_encoder_from_detrex(detrex_encoder)
    inputs = inputs_for(4, torch.float32, embed_dim=256)
    with torch.no_grad():
        torch.testing.assert_close(lite(**inputs), detrex_encoder(**inputs), atol=1e-4, rtol=0)


def test_unmappable_state_dict_is_a_value_error(detrex_msda):
    detrex_encoder = build_detrex_encoder("dino", 4, False, torch.float32)
    detrex_encoder.extra = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="extra.weight"):
        lite_encoder_from_detrex(detrex_encoder)


# ------------------------------------------------------------------ attention level


def attention_pair(detrex_msda, batch_first, dtype=torch.float64):
    torch.manual_seed(0)
    theirs = detrex_msda(embed_dim=32, num_heads=4, num_levels=4, num_points=2, dropout=0.0, batch_first=batch_first)
    perturb_parameters_(theirs, std=0.05)
    ours = MultiScaleDeformableAttention(embed_dim=32, num_heads=4, num_levels=4, num_points=2, dropout=0.0,
                                         batch_first=batch_first, value_placement="tokens")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs.to(dtype).eval(), ours.to(dtype).eval()


@pytest.mark.parametrize("placement", ["tokens", "samples"])
@pytest.mark.parametrize("box", [True, False], ids=["4d-ref", "2d-ref"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
def test_msda_cross_attention_matches_detrex(detrex_msda, batch_first, box, placement):
    theirs, ours = attention_pair(detrex_msda, batch_first)
    ours.value_placement = placement
    enc = inputs_for(4, torch.float64)
    g = torch.Generator().manual_seed(1)
    bs, nq = 3, 11
    ratios = enc["valid_ratios"]
    if box:
        centres = torch.rand(bs, nq, 2, generator=g) * 0.8 + 0.1
        ref = torch.cat([centres, torch.rand(bs, nq, 2, generator=g) * 0.4 + 0.05], -1)
        ref = (ref[:, :, None] * torch.cat([ratios, ratios], -1)[:, None]).double()
    else:
        ref = ((torch.rand(bs, nq, 2, generator=g) * 0.9 + 0.05)[:, :, None] * ratios[:, None]).double()
    query = torch.randn(bs, nq, 32, generator=g, dtype=torch.float64)
    pos = torch.randn(bs, nq, 32, generator=g, dtype=torch.float64)
    value = enc["query"]
    if not batch_first:
        query, pos, value = query.transpose(0, 1), pos.transpose(0, 1), value.transpose(0, 1)
    call = dict(query_pos=pos, key_padding_mask=enc["query_key_padding_mask"], reference_points=ref,
                spatial_shapes=enc["spatial_shapes"], level_start_index=enc["level_start_index"])
    with torch.no_grad():
        expected = theirs(query, None, value, None, **call)
        out = ours(query, None, value, None, **call)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cls", [KeyAwareDeformableAttention, MultiScaleDeformableAttention])
def test_our_attentions_are_detrex_msda_instances(detrex_msda, cls):
    attn = cls(embed_dim=32, num_heads=4)
    assert isinstance(attn, detrex_msda)
    encoder = LiteEncoder(embed_dim=32, num_heads=4, feedforward_dim=64, variant="H3L1-(2+1)x3")
    assert all(isinstance(layer.self_attn, detrex_msda) for layer in encoder.layers)


def test_without_detrex_imported_no_detrex_base(detrex_msda, monkeypatch):
    hide_detrex(monkeypatch)
    assert type(KeyAwareDeformableAttention(embed_dim=32, num_heads=4)) is KeyAwareDeformableAttention
