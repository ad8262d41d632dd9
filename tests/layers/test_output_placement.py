"""value_placement="output": the released code's value_proj_after, a different model.

Oracle, written from its definition: each head aggregates its own D channels
of the raw (padding-zeroed) input, and value_proj is applied to the
concatenated aggregate, then output_proj and the residual.
"""
import pytest
import torch

from lite_detr_plugin import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from lite_detr_plugin.ops import kda_reference, msda_reference

SHAPES = ((6, 7), (3, 4), (2, 2))


def _inputs(bs=2, num_query=5, C=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(SHAPES)
    areas = spatial_shapes.prod(1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S = int(areas.sum())
    mask = torch.zeros(bs, S, dtype=torch.bool)
    mask[1, ::5] = True
    return dict(
        query=torch.randn(bs, num_query, C, generator=g, dtype=torch.float64),
        value=torch.randn(bs, S, C, generator=g, dtype=torch.float64),
        query_pos=torch.randn(bs, num_query, C, generator=g, dtype=torch.float64),
        key_padding_mask=mask,
        reference_points=torch.rand(bs, num_query, len(SHAPES), 2, generator=g, dtype=torch.float64),
        spatial_shapes=spatial_shapes,
        level_start_index=level_start_index,
    )


def _locations(module, q, inputs):
    bs, nq, _ = q.shape
    offsets = module.sampling_offsets(q).view(bs, nq, module.num_heads, module.num_levels, module.num_points, 2)
    wh = inputs["spatial_shapes"].flip(-1).to(q.dtype)  # (W, H) per level
    return inputs["reference_points"][:, :, None, :, None, :] + offsets / wh[None, None, None, :, None, :]


def _raw_heads(module, inputs):
    bs, S, C = inputs["value"].shape
    raw = inputs["value"].masked_fill(inputs["key_padding_mask"][..., None], 0.0)
    return raw.view(bs, S, module.num_heads, C // module.num_heads)


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return module


@pytest.mark.parametrize("cls", ["kda", "msda"])
def test_output_placement_matches_value_proj_after_definition(cls):
    inputs = _inputs()
    kwargs = dict(embed_dim=32, num_heads=4, num_levels=3, num_points=2, dropout=0.0, batch_first=True,
                  value_placement="output")
    module = (KeyAwareDeformableAttention if cls == "kda" else MultiScaleDeformableAttention)(**kwargs)
    module = _randomize(module.double())
    got = module(inputs["query"], value=inputs["value"], query_pos=inputs["query_pos"],
                 key_padding_mask=inputs["key_padding_mask"], reference_points=inputs["reference_points"],
                 spatial_shapes=inputs["spatial_shapes"], level_start_index=inputs["level_start_index"])

    q = inputs["query"] + inputs["query_pos"]
    bs, nq, C = q.shape
    locations = _locations(module, q, inputs)
    raw = _raw_heads(module, inputs)
    common = (inputs["spatial_shapes"], inputs["level_start_index"], locations)
    if cls == "kda":
        queries = module.query_proj(q).view(bs, nq, module.num_heads, -1)
        aggregated = kda_reference(queries, None, raw, *common)
    else:
        weights = module.attention_weights(q).view(bs, nq, module.num_heads, -1).softmax(-1)
        aggregated = msda_reference(raw, *common, weights.view(bs, nq, module.num_heads, module.num_levels, -1))
    expected = inputs["query"] + module.output_proj(module.value_proj(aggregated))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [KeyAwareDeformableAttention, MultiScaleDeformableAttention])
def test_output_placement_is_a_different_function_and_auto_never_picks_it(cls):
    inputs = _inputs(seed=1)
    module = _randomize(cls(embed_dim=32, num_heads=4, num_levels=3, num_points=2, dropout=0.0,
                            batch_first=True).double())
    call = dict(value=inputs["value"], query_pos=inputs["query_pos"], key_padding_mask=inputs["key_padding_mask"],
                reference_points=inputs["reference_points"], spatial_shapes=inputs["spatial_shapes"],
                level_start_index=inputs["level_start_index"])
    outputs = {}
    for placement in ("tokens", "output"):
        module.value_placement = placement
        outputs[placement] = module(inputs["query"], **call)
    assert (outputs["tokens"] - outputs["output"]).abs().max() > 1e-3
    module.value_placement = "auto"
    for num_query, num_value in ((1, 10**6), (10**6, 1), (100, 100)):
        assert module.placement(num_query, num_value) in ("tokens", "samples")
