"""fvcore's count of tiny encoders equals the per-layer formulas, written out by hand.

Tiny size: C=16, M=2 heads (D=8), L=2 levels, P=2 points, FFN 32 (light FFN
32/8 = 4), levels 4×6 and 2×3 (N = 30 tokens). Lite ``H1L1-(1+1)x1``: the
high-level layer has the 6 tokens of level 1 as queries, the low-level layer
the 24 of level 0 ("paper") or all 30 ("released"); values are always the 30.

Per layer, fvcore counts (one multiply-add = 1):
  sampling_offsets Nq·C·(M·L·P·2), attention_weights Nq·C·(M·L·P) (MSDA),
  query_proj Nq·C² (KDA), output_proj Nq·C², FFN 2·Nq·C·F, LayerNorm 5·rows·C;
  "tokens": value_proj S·C² (+ key_proj S·C²), sampling 4·Nq·M·L·P·D per sampled tensor;
  "samples": sampling 4·Nq·M·L·P·(C+1), projection after sampling Nq·M·D·(C+1)
  (+ KDA's query fold Nq·M·D·(C+1));
  "output" (value_proj after aggregation): value_proj Nq·C² on the aggregated
  output (+ key_proj S·C² over the tokens), sampling 4·Nq·M·L·P·D per sampled tensor.
"full" adds q·k Nq·M·L·P·Dk, softmax 3·Nq·M·L·P and weighted sum Nq·M·L·P·Dv.
"""
import pytest
import torch

from lite_detr_plugin import ops
from lite_detr_plugin.encoders import LiteEncoder
from lite_detr_plugin.flops import count_encoder

C, M, L, P, F = 16, 2, 2, 2, 32
D = C // M
LIGHT_F = F // 8
SHAPES = [(4, 6), (2, 3)]
N = 4 * 6 + 2 * 3  # 30 values
HIGH, LOW = 2 * 3, 4 * 6  # queries of the high- and low-level layers
MLP = M * L * P  # 8 sampled points per query


@pytest.fixture(autouse=True)
def _compiled():
    if not ops.has_kernel("cpu"):
        pytest.fail(f"the compiled lite_detr op is not loaded ({ops.build_info()})")


def encoder(variant="standard", attention="msda", placement="tokens", mode="paper", key=False, layers=2):
    kwargs = dict(embed_dim=C, num_heads=M, feedforward_dim=F, attn_dropout=0.0, ffn_dropout=0.0,
                  num_feature_levels=L, variant=variant, attention=attention, value_placement=placement,
                  low_query_mode=mode, num_points=P, low_ffn_ratio=8)
    if variant == "standard":
        kwargs["num_layers"] = layers
    if attention == "kda":
        kwargs["use_key_proj"] = key
    return LiteEncoder(**kwargs).eval()


def value_side(nq, attention, placement, key=False):
    """Value projection + sampling (+ fold), by hand."""
    if placement == "tokens":
        return N * C * C + (N * C * C if key else 0) + 4 * nq * MLP * D * (2 if key else 1)
    if placement == "output":  # value_proj on the nq aggregated outputs; a separate key is projected over the tokens
        return nq * C * C + (N * C * C if key else 0) + 4 * nq * MLP * D * (2 if key else 1)
    fold = nq * M * D * (C + 1) if attention == "kda" else 0
    return 4 * nq * MLP * (C + 1) + nq * M * D * (C + 1) + fold


def attention_math(nq, attention, placement, key=False):
    """The "full" counting's extra terms."""
    dk = dv = C + 1 if placement == "samples" else D
    if attention == "kda":
        return nq * MLP * dk + 3 * nq * MLP + nq * MLP * dv
    return 3 * nq * MLP + nq * MLP * dv  # aten::softmax of the predicted weights + weighted sum


def layer(nq, attention, placement, ffn_rows=None, light_rows=0, mode="paper", key=False):
    """One layer: attention on nq queries, then the FFNs (full FFN on ffn_rows, light FFN on light_rows)."""
    ffn_rows = nq if ffn_rows is None else ffn_rows
    flops = nq * C * (MLP * 2)  # sampling_offsets
    flops += nq * C * MLP if attention == "msda" else nq * C * C  # attention_weights | query_proj
    flops += value_side(nq, attention, placement, key)
    flops += nq * C * C  # output_proj
    flops += 2 * ffn_rows * C * F + 2 * light_rows * C * LIGHT_F
    flops += 5 * nq * C + 5 * ffn_rows * C + 5 * light_rows * C  # norm1, norm2, light_norm
    if mode == "full":
        flops += attention_math(nq, attention, placement, key)
    return flops


@pytest.mark.parametrize("count_mode", ["paper", "full"])
@pytest.mark.parametrize("attention", ["msda", "kda"])
@pytest.mark.parametrize("placement", ["tokens", "samples", "output"])
def test_standard_encoder(count_mode, attention, placement):
    flops = count_encoder(encoder(attention=attention, placement=placement), SHAPES, counting=count_mode)
    per_layer = layer(N, attention, placement, mode=count_mode)
    assert flops.total == 2 * per_layer
    assert [flops.module_total(name) for name in flops.layers] == [per_layer, per_layer]
    assert [c.placement for c in flops.attention_calls] == [placement, placement]


@pytest.mark.parametrize("count_mode", ["paper", "full"])
@pytest.mark.parametrize("attention", ["msda", "kda"])
@pytest.mark.parametrize("placement", ["tokens", "samples", "output"])
def test_lite_paper_mode(count_mode, attention, placement):
    flops = count_encoder(encoder("H1L1-(1+1)x1", attention, placement, "paper"), SHAPES, counting=count_mode)
    high = layer(HIGH, attention, placement, mode=count_mode)
    low = layer(LOW, attention, placement, ffn_rows=0, light_rows=LOW, mode=count_mode)  # eq. (2): light FFN only
    assert [flops.module_total(name) for name in flops.layers] == [high, low]
    assert flops.total == high + low


@pytest.mark.parametrize("count_mode", ["paper", "full"])
@pytest.mark.parametrize("attention", ["msda", "kda"])
def test_lite_released_mode(count_mode, attention):
    flops = count_encoder(encoder("H1L1-(1+1)x1", attention, "tokens", "released"), SHAPES, counting=count_mode)
    high = layer(HIGH, attention, "tokens", mode=count_mode)
    # every token queries; the high-level rows take the full FFN, the low-level rows the light one
    low = layer(N, attention, "tokens", ffn_rows=HIGH, light_rows=LOW, mode=count_mode)
    assert flops.total == high + low


@pytest.mark.parametrize("count_mode", ["paper", "full"])
@pytest.mark.parametrize("placement", ["tokens", "samples", "output"])
def test_kda_with_separate_key(count_mode, placement):
    flops = count_encoder(encoder(attention="kda", placement=placement, key=True, layers=1), SHAPES,
                          counting=count_mode)
    if placement == "output":
        # key_proj over the tokens, value_proj on the aggregated output, key and value sampled (D channels each)
        expected = layer(N, "kda", "output", mode=count_mode, key=True)
    elif placement == "tokens":
        # key_proj over the tokens, and the key sampled beside the value (D channels each)
        expected = layer(N, "kda", "tokens", mode=count_mode, key=True)
        if count_mode == "full":
            expected -= attention_math(N, "kda", "tokens")
            expected += N * MLP * D + 3 * N * MLP + N * MLP * D
    else:
        # the key projection folds into the query: the same count as key = value
        expected = layer(N, "kda", "samples", mode=count_mode)
    assert flops.total == expected


@pytest.mark.parametrize("attention", ["msda", "kda"])
def test_auto_picks_the_cheaper_value_side(attention):
    """"auto" chooses per layer by a cost model; fvcore's counts must agree with its choice."""
    counts = {
        placement: count_encoder(encoder("H1L1-(1+1)x1", attention, placement, "paper"), SHAPES)
        for placement in ("tokens", "samples", "auto")
    }
    for index in range(2):
        sides = {p: counts[p].attention_calls[index].value_side for p in counts}
        assert sides["auto"] == min(sides["tokens"], sides["samples"])


@pytest.mark.parametrize("attention", ["msda", "kda"])
def test_output_placement_value_side(attention):
    """value_placement="output", the paper mode's placement: Nq·C² + 4·Nq·M·L·P·D per layer, by hand."""
    flops = count_encoder(encoder("H1L1-(1+1)x1", attention, "output", "paper"), SHAPES)
    assert [c.placement for c in flops.attention_calls] == ["output", "output"]
    for call, nq in zip(flops.attention_calls, (HIGH, LOW)):
        assert call.num_query == nq and call.num_value == N
        assert call.sampling == 4 * nq * MLP * D  # each head samples its own D raw channels
        assert call.value_side == nq * C * C + 4 * nq * MLP * D  # + value_proj on the aggregated output
    for name, nq in zip(flops.layers, (HIGH, LOW)):
        terms = flops.layer_terms(name)
        assert terms["value_proj"] == nq * C * C
        assert terms["sampling"] == 4 * nq * MLP * D
        assert terms["einsum"] == terms["key_proj"] == terms["other"] == 0
    assert flops.value_side == sum(nq * C * C + 4 * nq * MLP * D for nq in (HIGH, LOW))


def test_layer_terms_sum_to_layer_totals():
    flops = count_encoder(encoder("H1L1-(1+1)x1", "kda", "samples", "released"), SHAPES, counting="full")
    for name in flops.layers:
        terms = flops.layer_terms(name)
        assert sum(terms.values()) == flops.module_total(name)
        assert terms["other"] == 0


def test_refuses_the_reference_path(monkeypatch):
    """Without the compiled op the modules run the PyTorch reference; the report must not count that."""
    monkeypatch.setattr(ops, "has_kernel", lambda device: False)
    with pytest.raises(RuntimeError, match="compiled"):
        count_encoder(encoder(), SHAPES)


def test_no_deformable_op_left_unsupported():
    for attention in ("msda", "kda"):
        flops = count_encoder(encoder("H1L1-(1+1)x1", attention, "auto"), SHAPES, counting="full")
        assert flops.unsupported_ops == {}
        assert any(k.endswith("_forward") for k in flops.by_operator)


def test_detrex_inputs():
    """The report feeds detrex's encoder call: reference points at pixel centres, ratios 1, no padding."""
    from lite_detr_plugin.flops import encoder_inputs

    inputs = encoder_inputs(SHAPES, embed_dim=C)
    assert inputs["query"].shape == (1, N, C) and inputs["query_pos"].shape == (1, N, C)
    assert inputs["reference_points"].shape == (1, N, L, 2)
    assert not inputs["query_key_padding_mask"].any()
    assert inputs["level_start_index"].tolist() == [0, 24]
    first = inputs["reference_points"][0, 0, 0].tolist()
    assert first == pytest.approx([0.5 / 6, 0.5 / 4])  # (x, y) of level 0's first pixel centre
    assert torch.equal(inputs["valid_ratios"], torch.ones(1, L, 2))
