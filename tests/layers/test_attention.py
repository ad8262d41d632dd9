"""KeyAwareDeformableAttention and MultiScaleDeformableAttention called as detrex calls its MSDA.

Encoder self-attention: ``BaseTransformerLayer`` calls
``attn(query, query, query, identity, query_pos=..., key_pos=..., attn_mask=...,
key_padding_mask=..., spatial_shapes=..., reference_points=..., level_start_index=...,
valid_ratios=...)`` (contract §3). Decoder cross-attention passes ``key=None``,
``value=memory`` with fewer queries than values and 4-d (box) reference points.
Results are checked against the independent oracle of tests/encoders/oracles.py.
"""
import math

import pytest
import torch

from lite_detr_plugin.layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs
from tests.encoders.oracles import deformable_attention

from ..helpers.modules import perturb_parameters_

C, M, L, P = 32, 4, 4, 2
ATTENTIONS = [
    pytest.param(KeyAwareDeformableAttention, {}, id="kda"),
    pytest.param(KeyAwareDeformableAttention, {"use_key_proj": True}, id="kda-key_proj"),
    pytest.param(MultiScaleDeformableAttention, {}, id="msda"),
]


def make_attention(cls, extra=None, dtype=torch.float64, batch_first=True, placement="auto", offset_scale=1.0,
                   seed=0, num_levels=L):
    torch.manual_seed(seed)
    attn = cls(embed_dim=C, num_heads=M, num_levels=num_levels, num_points=P, dropout=0.0, batch_first=batch_first,
               value_placement=placement, **(extra or {}))
    perturb_parameters_(attn, std=0.05, seed=seed)
    with torch.no_grad():
        attn.sampling_offsets.bias.mul_(offset_scale)
    return attn.to(dtype).eval()


def encoder_inputs(dtype=torch.float64):
    inputs = detrex_encoder_kwargs([(64, 96), (40, 64)], num_levels=L, embed_dim=C)
    for name in ("query", "query_pos"):
        inputs[name] = inputs[name].to(dtype)
    return inputs


def decoder_inputs(num_query=7, box=True, dtype=torch.float64, seed=0):
    """Decoder cross-attention: queries of their own, the encoder memory as value, and
    reference points made as detrex's decoders make them from (box) proposals."""
    inputs = encoder_inputs(dtype)
    g = torch.Generator().manual_seed(seed)
    bs = inputs["query"].shape[0]
    ratios = inputs["valid_ratios"]
    if box:
        boxes = torch.cat([torch.rand(bs, num_query, 2, generator=g) * 0.8 + 0.1,
                           torch.rand(bs, num_query, 2, generator=g) * 0.45 + 0.05], -1)
        reference_points = boxes[:, :, None] * torch.cat([ratios, ratios], -1)[:, None]
    else:
        reference_points = (torch.rand(bs, num_query, 2, generator=g) * 0.9 + 0.05)[:, :, None] * ratios[:, None]
    return dict(
        query=torch.randn(bs, num_query, C, generator=g, dtype=torch.float64).to(dtype),
        query_pos=torch.randn(bs, num_query, C, generator=g, dtype=torch.float64).to(dtype),
        value=inputs["query"],
        key_padding_mask=inputs["query_key_padding_mask"],
        reference_points=reference_points,
        spatial_shapes=inputs["spatial_shapes"],
        level_start_index=inputs["level_start_index"],
        valid_ratios=ratios,
    )


def shapes_of(inputs):
    return [tuple(s) for s in inputs["spatial_shapes"].tolist()]


def self_attention_call(attn, inputs, identity=None):
    """``BaseTransformerLayer``'s self_attn call, positional ``identity`` 4th."""
    q = inputs["query"]
    return attn(q, q, q, identity, query_pos=inputs["query_pos"], key_pos=inputs["query_pos"], attn_mask=None,
                key_padding_mask=inputs["query_key_padding_mask"], reference_points=inputs["reference_points"],
                spatial_shapes=inputs["spatial_shapes"], level_start_index=inputs["level_start_index"],
                valid_ratios=inputs["valid_ratios"])


def cross_attention_call(attn, inputs, batch_first=True):
    """A detrex decoder's cross_attn call: key=None, value=memory, key_padding_mask of the memory."""
    query, value, pos = inputs["query"], inputs["value"], inputs["query_pos"]
    if not batch_first:
        query, value, pos = query.transpose(0, 1), value.transpose(0, 1), pos.transpose(0, 1)
    out = attn(query, None, value, None, query_pos=pos, key_pos=None, attn_mask=None,
               key_padding_mask=inputs["key_padding_mask"], reference_points=inputs["reference_points"],
               spatial_shapes=inputs["spatial_shapes"], level_start_index=inputs["level_start_index"],
               valid_ratios=inputs["valid_ratios"])
    return out if batch_first else out.transpose(0, 1)


# ------------------------------------------------------------------ construction and init


@pytest.mark.parametrize("cls", [KeyAwareDeformableAttention, MultiScaleDeformableAttention])
def test_detrex_constructor_keywords(cls):
    attn = cls(embed_dim=256, num_heads=8, num_levels=5, num_points=4, img2col_step=64, dropout=0.1, batch_first=True)
    assert attn.embed_dim == 256 and attn.num_heads == 8 and attn.num_levels == 5 and attn.num_points == 4
    assert attn.batch_first is True and attn.dropout.p == 0.1
    assert attn.sampling_offsets.out_features == 8 * 5 * 4 * 2
    if cls is MultiScaleDeformableAttention:
        assert attn.attention_weights.out_features == 8 * 5 * 4
    else:
        assert not hasattr(attn, "attention_weights") and attn.query_proj.out_features == 256


def detrex_offset_bias(num_heads, num_levels, num_points):
    """Deformable DETR's initial sampling offsets: head h points along angle 2πh/M,
    normalised so the larger of |cos|, |sin| is 1, point i at (i + 1) times that."""
    bias = torch.empty(num_heads, num_levels, num_points, 2)
    for h in range(num_heads):
        angle = 2 * math.pi * h / num_heads
        direction = torch.tensor([math.cos(angle), math.sin(angle)])
        direction = direction / direction.abs().max()
        for i in range(num_points):
            bias[h, :, i] = direction * (i + 1)
    return bias.flatten()


@pytest.mark.parametrize("cls,extra", ATTENTIONS)
def test_initialisation(cls, extra):
    attn = cls(embed_dim=C, num_heads=M, num_levels=L, num_points=3, **extra)
    assert torch.equal(attn.sampling_offsets.weight, torch.zeros_like(attn.sampling_offsets.weight))
    torch.testing.assert_close(attn.sampling_offsets.bias, detrex_offset_bias(M, L, 3), atol=1e-6, rtol=0)
    projections = [attn.value_proj, attn.output_proj]
    if cls is MultiScaleDeformableAttention:
        assert not attn.attention_weights.weight.any() and not attn.attention_weights.bias.any()
    else:
        projections.append(attn.query_proj)
        if extra:
            projections.append(attn.key_proj)
    bound = math.sqrt(6 / (C + C))  # xavier_uniform
    for linear in projections:
        assert not linear.bias.any()
        assert linear.weight.abs().max() <= bound and linear.weight.std() > bound / 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(value_placement="later"), "value_placement must be one of"),
    (dict(embed_dim=30), "divisible by num_heads"),
    (dict(num_points=0), "num_points must be a positive integer"),
    (dict(num_levels=0), "num_levels must be a positive integer"),
])
@pytest.mark.parametrize("cls", [KeyAwareDeformableAttention, MultiScaleDeformableAttention])
def test_bad_options(cls, kwargs, match):
    options = dict(embed_dim=C, num_heads=M)
    options.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cls(**options)


# ------------------------------------------------------------------ the calls


@pytest.mark.parametrize("cls,extra", ATTENTIONS)
def test_self_attention_call_matches_oracle(cls, extra):
    attn = make_attention(cls, extra)
    inputs = encoder_inputs()
    with torch.no_grad():
        out = self_attention_call(attn, inputs)
        expected = inputs["query"] + deformable_attention(
            attn, inputs["query"] + inputs["query_pos"], inputs["query"], inputs["reference_points"],
            shapes_of(inputs), inputs["query_key_padding_mask"])
    assert out.shape == inputs["query"].shape
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cls,extra", ATTENTIONS)
def test_residual_is_inside_and_value_defaults_to_query(cls, extra):
    attn = make_attention(cls, extra)
    inputs = encoder_inputs()
    q = inputs["query"]
    common = dict(query_pos=inputs["query_pos"], key_padding_mask=inputs["query_key_padding_mask"],
                  reference_points=inputs["reference_points"], spatial_shapes=inputs["spatial_shapes"],
                  level_start_index=inputs["level_start_index"])
    identity = torch.randn_like(q)
    with torch.no_grad():
        default = attn(q, **common)
        explicit_value = attn(q, value=q, **common)
        with_identity = attn(q, None, None, identity, **common)
        with_pos_value = attn(q, value=q + inputs["query_pos"], **common)
    torch.testing.assert_close(default, explicit_value, atol=0, rtol=0)
    torch.testing.assert_close(with_identity - identity, default - q, atol=1e-12, rtol=0)
    assert (with_pos_value - default).abs().max() > 1e-3  # so value really is the query without pos
    with torch.no_grad():
        attn.output_proj.weight.zero_()
        attn.output_proj.bias.zero_()
        assert torch.equal(attn(q, **common), q)


@pytest.mark.parametrize("box", [True, False], ids=["4d-ref", "2d-ref"])
@pytest.mark.parametrize("cls,extra", ATTENTIONS)
def test_cross_attention_call_matches_oracle(cls, extra, box):
    attn = make_attention(cls, extra)
    inputs = decoder_inputs(box=box)
    with torch.no_grad():
        out = cross_attention_call(attn, inputs)
        expected = inputs["query"] + deformable_attention(
            attn, inputs["query"] + inputs["query_pos"], inputs["value"], inputs["reference_points"],
            shapes_of(inputs), inputs["key_padding_mask"])
    assert out.shape == (2, 7, C)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cls,extra", ATTENTIONS)
def test_batch_first_false(cls, extra):
    first = make_attention(cls, extra, batch_first=True)
    second = make_attention(cls, extra, batch_first=False)
    second.load_state_dict(first.state_dict())
    inputs = decoder_inputs()
    with torch.no_grad():
        torch.testing.assert_close(cross_attention_call(second, inputs, batch_first=False),
                                   cross_attention_call(first, inputs), atol=1e-12, rtol=0)


# ------------------------------------------------------------------ placements


def _run_with_grads(attn, inputs, batch_first, weights):
    inputs = {k: (v.detach().clone().requires_grad_(True) if k in ("query", "value", "query_pos") else v)
              for k, v in inputs.items()}
    attn.zero_grad()
    out = cross_attention_call(attn, inputs, batch_first=batch_first)
    (out * weights).sum().backward()
    grads = {"input." + k: inputs[k].grad for k in ("query", "value", "query_pos")}
    grads.update({n: p.grad.clone() for n, p in attn.named_parameters()})
    return out.detach(), grads


@pytest.mark.parametrize("geometry", ["self-2d", "cross-2d", "cross-4d"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("cls,extra", ATTENTIONS)
def test_placements_agree(cls, extra, dtype, batch_first, geometry):
    """Projecting the tokens, projecting the samples and "auto" give the same outputs and
    gradients, with padding, samples outside the maps (offsets ×2: 10-98% per level),
    for encoder self-attention and decoder cross-attention (7 queries, 2-d or box references)."""
    if geometry == "self-2d":  # every token queries
        enc = encoder_inputs(dtype)
        inputs = dict(query=enc["query"], query_pos=enc["query_pos"], value=enc["query"],
                      key_padding_mask=enc["query_key_padding_mask"], reference_points=enc["reference_points"],
                      spatial_shapes=enc["spatial_shapes"], level_start_index=enc["level_start_index"],
                      valid_ratios=enc["valid_ratios"])
    else:
        inputs = decoder_inputs(num_query=7, box=geometry == "cross-4d", dtype=dtype)
    results = {}
    weights = None
    for placement in ("tokens", "samples", "auto"):
        attn = make_attention(cls, extra, dtype=dtype, batch_first=batch_first, placement=placement, offset_scale=2.0)
        if weights is None:
            shape = inputs["query"].shape
            weights = torch.randn(shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(dtype)
        results[placement] = _run_with_grads(attn, inputs, batch_first, weights)
    tol = dict(atol=1e-10, rtol=1e-10) if dtype == torch.float64 else dict(atol=2e-5, rtol=1e-4)
    out_tokens, grads_tokens = results["tokens"]
    for placement in ("samples", "auto"):
        out, grads = results[placement]
        torch.testing.assert_close(out, out_tokens, **tol)
        assert grads.keys() == grads_tokens.keys()
        for name, grad in grads_tokens.items():
            assert grad is not None and grads[name] is not None, name
            torch.testing.assert_close(grads[name], grad, **tol, msg=f"{placement}: grad of {name}")


def test_some_samples_fall_outside_the_maps():
    """The placement test's offset scale really puts samples outside [0, 1]."""
    attn = make_attention(KeyAwareDeformableAttention, offset_scale=2.0)
    inputs = decoder_inputs(box=False)
    offsets = attn.sampling_offsets(inputs["query"] + inputs["query_pos"]).view(2, 7, M, L, P, 2)
    wh = inputs["spatial_shapes"].flip(-1).to(offsets.dtype)
    locations = inputs["reference_points"][:, :, None, :, None, :] + offsets / wh[None, None, None, :, None, :]
    outside = ((locations < 0) | (locations > 1)).any(-1).float()
    assert 0.1 < outside.mean() < 0.9
    assert (outside.mean(dim=(0, 1, 2, 4)) < 0.99).all()  # every level keeps samples inside


@pytest.mark.parametrize("placement", ["tokens", "samples"])
@pytest.mark.parametrize("cls,extra", ATTENTIONS)
def test_padded_values_do_not_matter(cls, extra, placement):
    attn = make_attention(cls, extra, placement=placement, offset_scale=4.0)
    inputs = decoder_inputs()
    mask = inputs["key_padding_mask"]
    perturbed = dict(inputs, value=torch.where(mask[..., None], inputs["value"] * 50 + 7, inputs["value"]))
    with torch.no_grad():
        out, out_perturbed = cross_attention_call(attn, inputs), cross_attention_call(attn, perturbed)
        unmasked = cross_attention_call(attn, dict(perturbed, key_padding_mask=None))
    torch.testing.assert_close(out_perturbed, out, atol=1e-10, rtol=0)
    assert (unmasked - out).abs().max() > 1e-3  # the mask, not luck, hides the padding


@pytest.mark.parametrize("cls,extra", ATTENTIONS)
def test_autocast_bfloat16(cls, extra):
    attn = make_attention(cls, extra, dtype=torch.float32)
    inputs = decoder_inputs(dtype=torch.float32)
    with torch.no_grad():
        reference = cross_attention_call(attn, inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = cross_attention_call(attn, inputs)
    assert out.dtype == torch.float32  # identity (float32) + bfloat16 projection, as in detrex
    assert (out - reference).abs().max() < 0.05


@pytest.mark.parametrize("cls", [KeyAwareDeformableAttention, MultiScaleDeformableAttention])
def test_wrong_geometry_is_a_value_error(cls):
    attn = make_attention(cls)
    inputs = decoder_inputs()
    with pytest.raises(ValueError, match="num_levels=4"):
        cross_attention_call(attn, dict(inputs, spatial_shapes=inputs["spatial_shapes"][:3]))
    with pytest.raises(ValueError, match="reference_points"):
        cross_attention_call(attn, dict(inputs, reference_points=inputs["reference_points"][..., :1]))
    with pytest.raises(ValueError, match="required"):
        cross_attention_call(attn, dict(inputs, reference_points=None))
