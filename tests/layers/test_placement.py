"""The value-placement cost model (lite_detr_plugin.layers.placement) and the modules that ask it.

Oracle: the cost model as the attention modules computed it before it moved out of them,
written plainly below (``_old_uses_samples``): "auto" must pick the same placement for the
same sizes, on every device type, with both cost models.
"""
import random

import pytest
import torch

from lite_detr_plugin import ops
from lite_detr_plugin.layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from lite_detr_plugin.layers.placement import (
    SAMPLE_COST_FACTOR,
    active_cost,
    choose_placement,
    choosing_by,
    placement_terms,
    sample_cost_factor,
    sampling_cost,
)

OLD_KAPPA = {"cpu": {"kda": 10.0, "msda": 5.0}, "cuda": {"kda": 100.0, "msda": 100.0}}


def _old_uses_samples(kind, nq, nv, C, M, L, P, key, device_type, cost):
    """``_DeformableAttentionBase.uses_samples_placement`` before the move, for value_placement="auto"."""
    factor = 1.0 if cost == "flops" else OLD_KAPPA.get(device_type, OLD_KAPPA["cuda"])[kind]
    D = C // M
    extra_token = nv * C * C if (kind == "kda" and key) else 0
    extra_sample = nq * C * (C + 1) if kind == "kda" else 0
    sampled_tensors = 2 if (kind == "kda" and key) else 1
    tokens = nv * C * C + extra_token
    tokens = tokens + factor * (4 * nq * M * L * P * D) * sampled_tensors
    samples = nq * C * (C + 1) + extra_sample
    samples = samples + factor * (4 * nq * M * L * P * (C + 1))
    return bool(samples < tokens)


CLASSES = {"kda": KeyAwareDeformableAttention, "msda": MultiScaleDeformableAttention}


def test_auto_choice_equals_the_former_formulas():
    """5,000 random sizes (seeded), every attention kind, device type and cost model."""
    rng = random.Random(0)
    choices = set()
    for _ in range(5000):
        kind = rng.choice(["kda", "msda"])
        heads, head_dim = rng.randint(1, 16), rng.randint(1, 64)
        levels, points = rng.randint(1, 5), rng.randint(1, 8)
        nq, nv = rng.randint(1, 200_000), rng.randint(1, 200_000)
        key, device_type = rng.random() < 0.5, rng.choice(["cpu", "cuda", "mps"])
        cost = rng.choice(["measured", "flops"])
        C = heads * head_dim
        old = _old_uses_samples(kind, nq, nv, C, heads, levels, points, key, device_type, cost)
        got = choose_placement("auto", kind, nq, nv, C, heads, levels, points, separate_key=key,
                               device_type=device_type, cost=cost)
        assert got == ("samples" if old else "tokens"), (kind, nq, nv, C, heads, levels, points, key, device_type)
        choices.add(got)
    assert choices == {"samples", "tokens"}


@pytest.mark.parametrize("kind,extra", [("kda", {}), ("kda", {"use_key_proj": True}), ("msda", {})])
def test_modules_choose_as_the_former_formulas(kind, extra):
    """The module's own sizes (and key_proj) reach the cost model, near the decision boundary too."""
    C, M, L, P = 64, 4, 3, 2
    module = CLASSES[kind](embed_dim=C, num_heads=M, num_levels=L, num_points=P, **extra)
    key = bool(extra)
    nv = 5000
    seen = set()
    for nq in list(range(1, 6000, 37)) + [nv]:
        for device_type in ("cpu", "cuda"):
            for cost in ("measured", "flops"):
                old = _old_uses_samples(kind, nq, nv, C, M, L, P, key, device_type, cost)
                got = module.placement(nq, nv, device_type, cost=cost)
                assert got == ("samples" if old else "tokens"), (nq, device_type, cost)
                seen.add(got)
    assert seen == {"samples", "tokens"}  # the sweep crosses the boundary


@pytest.mark.parametrize("cls", [KeyAwareDeformableAttention, MultiScaleDeformableAttention])
def test_auto_placement_picks_samples_for_few_queries_and_tokens_for_all(cls):
    attn = cls(embed_dim=256, num_heads=8, num_levels=4, num_points=4, value_placement="auto")
    assert attn.placement(num_query=900, num_value=22223) == "samples"  # decoder cross-attention
    assert attn.placement(num_query=22223, num_value=22223) == "tokens"  # every token queries
    assert cls(embed_dim=32, num_heads=4, value_placement="samples").placement(22223, 22223) == "samples"
    assert cls(embed_dim=32, num_heads=4, value_placement="tokens").placement(1, 22223) == "tokens"
    assert cls(embed_dim=32, num_heads=4, value_placement="output").placement(1, 22223) == "output"


@pytest.mark.parametrize("cls", [KeyAwareDeformableAttention, MultiScaleDeformableAttention])
def test_auto_placement_cost_models(cls):
    """A Lite high-level update (5,523 queries on 22,223 tokens): by FLOPs projecting after
    sampling is cheaper, but reading 257 channels per head costs more time on the CPU than
    the GEMM it saves (measured, lite-detr-benchmark-placement), so "measured" projects the
    tokens; on CUDA, with tensor-core GEMMs, even the decoder's 900 queries project the tokens."""
    attn = cls(embed_dim=256, num_heads=8, num_levels=4, num_points=4, value_placement="auto")
    assert active_cost() == "measured"
    assert attn.placement(5523, 22223, "cpu") == "tokens"
    assert attn.placement(900, 22223, "cpu") == "samples"
    assert attn.placement(900, 22223, "cuda") == "tokens"
    assert attn.placement(5523, 22223, "cpu", cost="flops") == "samples"
    with choosing_by("flops"):
        assert attn.placement(5523, 22223, "cpu") == "samples"
    assert attn.placement(5523, 22223, "cpu") == "tokens"
    with choosing_by("exported"):  # decomposed sampling (ONNX): the decoder projects the tokens too
        assert attn.placement(900, 22223, "cpu") == "tokens"
    assert attn.placement(900, 22223, "cpu") == "samples"
    with pytest.raises(ValueError, match="cost"):
        attn.placement(5523, 22223, cost="fast")


def test_dino_size_terms_hand_computed():
    """KDA, C=256, M=8, L=4, P=4, a high-level update of 5,523 queries on 22,223 tokens."""
    terms = placement_terms("kda", 5523, 22223, 256, 8, 4, 4)
    assert terms["tokens"] == (22223 * 256 * 256, 4 * 5523 * 8 * 4 * 4 * 32)
    assert terms["samples"] == (2 * 5523 * 256 * 257, 4 * 5523 * 8 * 4 * 4 * 257)
    # by FLOPs: 1,456,406,528 + 90,488,832 (tokens) > 726,738,432 + 726,738,432 (samples)
    assert sum(terms["tokens"]) == 1_546_895_360 and sum(terms["samples"]) == 1_453_476_864
    # measured (κ = 10 on the CPU): 1,456,406,528 + 904,888,320 < 726,738,432 + 7,267,384,320
    assert terms["tokens"][0] + 10 * terms["tokens"][1] == 2_361_294_848
    assert terms["samples"][0] + 10 * terms["samples"][1] == 7_994_122_752
    msda = placement_terms("msda", 5523, 22223, 256, 8, 4, 4)
    assert msda["samples"][0] == 5523 * 256 * 257  # no query fold
    key = placement_terms("kda", 5523, 22223, 256, 8, 4, 4, separate_key=True)
    assert key["tokens"] == (2 * 22223 * 256 * 256, 2 * 4 * 5523 * 8 * 4 * 4 * 32)  # keys projected and sampled
    assert sampling_cost(1, 2, 3, 4, 5) == 4 * 1 * 2 * 3 * 4 * 5


def test_cost_factors():
    assert SAMPLE_COST_FACTOR == OLD_KAPPA
    assert sample_cost_factor("kda", "cpu") == 10.0 and sample_cost_factor("msda", "cpu") == 5.0
    assert sample_cost_factor("kda", "mps") == 100.0  # other devices: the CUDA factors
    assert sample_cost_factor("msda", "cuda", cost="flops") == 1.0


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="attention must be one of 'kda', 'msda'; got 'mha'"):
        placement_terms("mha", 1, 1, 8, 2, 1, 1)
    with pytest.raises(ValueError, match="value_placement"):
        choose_placement("value", "kda", 1, 1, 8, 2, 1, 1)
    with pytest.raises(ValueError, match="cost"):
        choose_placement("auto", "kda", 1, 1, 8, 2, 1, 1, cost="time")
    with pytest.raises(ValueError, match="cost"):
        with choosing_by("time"):
            pass
    assert active_cost() == "measured"


def test_choosing_by_restores_on_error():
    with pytest.raises(RuntimeError):
        with choosing_by("flops"):
            assert active_cost() == "flops"
            raise RuntimeError("boom")
    assert active_cost() == "measured"


def _boundary_map(kind, C, M, L, P):
    """(Nq, (H, W)): one level of H×W value tokens where FLOPs pick "samples" but measured CPU time "tokens"."""
    nq = 1
    for height, width in ((h, w) for h in range(1, 20) for w in range(1, 20)):
        nv = height * width
        if (choose_placement("auto", kind, nq, nv, C, M, L, P, cost="flops") == "samples"
                and choose_placement("auto", kind, nq, nv, C, M, L, P, cost="measured") == "tokens"):
            return nq, (height, width)
    raise AssertionError("no such sizes")


@pytest.mark.parametrize("kind", ["kda", "msda"])
def test_forward_follows_the_active_cost_model(kind, monkeypatch):
    """Inside choosing_by("flops") the forward itself samples the raw C + 1 channels ("samples")."""
    C, M, L, P = 16, 2, 1, 1
    nq, (h, w) = _boundary_map(kind, C, M, L, P)
    nv = h * w
    module = CLASSES[kind](embed_dim=C, num_heads=M, num_levels=L, num_points=P, dropout=0.0,
                           batch_first=True).eval()
    channels = []
    op_name = "kda" if kind == "kda" else "msda"
    original = getattr(ops, op_name)

    def spy(*args, **kwargs):
        value = args[2] if op_name == "kda" else args[0]
        channels.append(value.shape[-1])
        return original(*args, **kwargs)

    monkeypatch.setattr(ops, op_name, spy)
    g = torch.Generator().manual_seed(0)
    call = dict(value=torch.randn(1, nv, C, generator=g), reference_points=torch.rand(1, nq, L, 2, generator=g),
                spatial_shapes=torch.tensor([[h, w]]), level_start_index=torch.tensor([0]))
    query = torch.randn(1, nq, C, generator=g)
    with torch.no_grad():
        measured = module(query, **call)
        with choosing_by("flops"):
            flops = module(query, **call)
    assert channels == [C // M, C + 1]  # "tokens" samples D channels per head; "samples" the raw C + 1
    torch.testing.assert_close(flops, measured, rtol=1e-4, atol=1e-5)  # the same function

