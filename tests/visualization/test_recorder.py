"""AttentionRecorder: the recorded weights are the ones the op used, and KDA's are softmax(q·k/√d).

Two oracles, independent of the recorder's code:
* the recorded locations and weights, fed to the reference MSDA op (a weighted sum of
  grid_sample'd values), give the attention output the module's own op produced
  (captured at the input of ``output_proj``);
* for KDA, the reference KDA op (``kda_reference``) at the recorded locations, and
  ``softmax(q·k/√d)`` computed here with a hand-written bilinear sampler of the
  keys at the recorded locations.
"""
import math

import pytest
import torch

from lite_detr_plugin.layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from lite_detr_plugin.ops.reference import kda_reference, msda_reference
from lite_detr_plugin.visualization import AttentionRecorder

SHAPES = torch.tensor([[6, 7], [3, 4], [2, 2]])
STARTS = torch.tensor([0, 42, 54])
S = 58
C, M = 16, 2


def _bilinear(feature, x, y):
    """feature [H, W, D] sampled at pixel-space (x, y) (align_corners=False), zeros outside."""
    H, W, D = feature.shape
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(D, dtype=feature.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - abs(px - xi)) * (1 - abs(py - yi))
            if 0 <= xi < W and 0 <= yi < H:
                out += weight * feature[yi, xi]
    return out


def _inputs(batch_first, num_query, padding=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(2, S, C, generator=g, dtype=torch.float64)
    query = value[:, S - num_query :]  # encoder self-attention: the queries are the last tokens
    pos = torch.randn(2, num_query, C, generator=g, dtype=torch.float64)
    ref = torch.rand(2, num_query, 3, 2, generator=g, dtype=torch.float64)
    mask = torch.zeros(2, S, dtype=torch.bool)
    if padding:
        mask[1, 40:42] = True
    kwargs = dict(value=value, query_pos=pos, key_padding_mask=mask, reference_points=ref,
                  spatial_shapes=SHAPES, level_start_index=STARTS)
    if not batch_first:
        query, kwargs["value"], kwargs["query_pos"] = query.transpose(0, 1), value.transpose(0, 1), pos.transpose(0, 1)
    return query, kwargs


def _module(cls, placement, batch_first, **kwargs):
    module = cls(embed_dim=C, num_heads=M, num_levels=3, num_points=2, dropout=0.0, batch_first=batch_first,
                 value_placement=placement, **kwargs).double().eval()
    with torch.no_grad():  # non-trivial offsets and weights
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def _capture_op_output(module):
    captured = {}
    module.output_proj.register_forward_pre_hook(lambda m, args: captured.__setitem__("out", args[0].detach()))
    return captured


CASES = [
    (KeyAwareDeformableAttention, "tokens", True, {}),
    (KeyAwareDeformableAttention, "samples", True, {}),
    (KeyAwareDeformableAttention, "output", False, {}),
    (KeyAwareDeformableAttention, "tokens", False, {"use_key_proj": True}),
    (KeyAwareDeformableAttention, "samples", True, {"use_key_proj": True}),
    (MultiScaleDeformableAttention, "tokens", False, {}),
    (MultiScaleDeformableAttention, "samples", True, {}),
]


@pytest.mark.parametrize("cls, placement, batch_first, extra", CASES)
def test_recorded_weights_reproduce_the_op_output(cls, placement, batch_first, extra):
    module = _module(cls, placement, batch_first, **extra)
    query, kwargs = _inputs(batch_first, num_query=16)
    captured = _capture_op_output(module)
    with AttentionRecorder(module, include=None) as recorder:
        module(query, **kwargs)
    (record,) = recorder.records
    assert record.kind == ("kda" if cls is KeyAwareDeformableAttention else "msda")
    assert record.locations.shape == (2, 16, M, 3, 2, 2) and record.weights.shape == (2, 16, M, 3, 2)
    assert record.query_start == S - 16 and list(record.query_tokens()) == list(range(S - 16, S))
    torch.testing.assert_close(record.weights.sum((-2, -1)), torch.ones(2, 16, M))
    value = kwargs["value"] if batch_first else kwargs["value"].transpose(0, 1)
    mask = kwargs["key_padding_mask"]
    # the values the op weighs: value_proj(x) with padding zeroed ("output": x itself, then value_proj)
    projected = value if placement == "output" else module.value_proj(value)
    projected = projected.masked_fill(mask[..., None], 0.0).view(2, S, M, C // M)
    expected = msda_reference(projected.float(), SHAPES, STARTS, record.locations, record.weights)
    if placement == "output":
        expected = module.value_proj(expected.double()).float()
    torch.testing.assert_close(expected, captured["out"].float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("placement", ["tokens", "samples", "output"])
def test_kda_weights_are_softmax_of_q_dot_k(placement):
    module = _module(KeyAwareDeformableAttention, placement, batch_first=True)
    query, kwargs = _inputs(True, num_query=5, seed=1)
    with AttentionRecorder(module, include=None) as recorder:
        module(query, **kwargs)
    record = recorder.records[0]
    value, mask = kwargs["value"], kwargs["key_padding_mask"]
    keys = value if placement == "output" else module.value_proj(value)
    keys = keys.masked_fill(mask[..., None], 0.0).view(2, S, M, C // M).detach()
    q = module.query_proj(query + kwargs["query_pos"]).view(2, 5, M, C // M).detach()
    D = C // M
    # the reference KDA op at the recorded locations weighs any values exactly as the recorded weights do
    # (probe values wider than the L·P = 6 samples: equal outputs mean equal weights)
    probe = torch.randn(2, S, M, 4 * 3 * 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    locations = record.locations.double()
    torch.testing.assert_close(
        msda_reference(probe, SHAPES, STARTS, locations, record.weights.double()),
        kda_reference(q, keys, probe, SHAPES, STARTS, locations),
        atol=1e-5, rtol=1e-5,
    )
    for b in range(2):
        for n in range(5):
            for m in range(M):
                logits = []
                for level, ((H, W), start) in enumerate(zip(SHAPES.tolist(), STARTS.tolist())):
                    fmap = keys[b, start : start + H * W, m].view(H, W, D)
                    for p in range(2):
                        x, y = record.locations[b, n, m, level, p].double()
                        logits.append(torch.dot(q[b, n, m], _bilinear(fmap, float(x), float(y))) / D**0.5)
                expected = torch.softmax(torch.stack(logits), 0).view(3, 2)
                torch.testing.assert_close(record.weights[b, n, m].double(), expected, atol=1e-5, rtol=1e-5)


def test_recorder_changes_nothing_and_detaches():
    module = _module(KeyAwareDeformableAttention, "tokens", batch_first=True)
    query, kwargs = _inputs(True, num_query=S)
    before = module(query, **kwargs)
    with AttentionRecorder(module, include=None) as recorder:
        during = module(query, **kwargs)
        module(query, **kwargs)
    after = module(query, **kwargs)
    assert torch.equal(before, during) and torch.equal(before, after)
    assert len(recorder.records) == 2 and [r.call for r in recorder.records] == [0, 1]
    assert recorder.records[0].query_start == 0
    assert not module._forward_hooks and not module.output_proj._forward_pre_hooks


def test_decoder_queries_have_no_token_start():
    module = _module(MultiScaleDeformableAttention, "tokens", batch_first=True)
    _, kwargs = _inputs(True, num_query=4)
    queries = torch.randn(2, 4, C, dtype=torch.float64)
    with AttentionRecorder(module, include=None) as recorder:
        module(queries, **kwargs)
    assert recorder.records[0].query_start is None and recorder.records[0].query_tokens() is None


def test_model_without_our_attention_is_refused():
    with pytest.raises(ValueError, match="no lite_detr_plugin deformable attention"):
        AttentionRecorder(torch.nn.Linear(2, 2))
    module = _module(MultiScaleDeformableAttention, "tokens", batch_first=True)
    with pytest.raises(ValueError, match="include='encoder'"):
        AttentionRecorder(torch.nn.Sequential(module))  # its name, "0", has no "encoder"
