"""The op handles, op by op: counts written out by hand from the shapes.

Conventions (fvcore): one multiply-add = 1 FLOP; bilinear sampling = 4 FLOPs
per sampled output element; element-wise work free ("paper"); the "full" counting
adds q·k (Dk per logit), the softmax (3 per logit) and the weighted sum (Dv per
output element) per sampled point.
"""
import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

from lite_detr_plugin import ops
from lite_detr_plugin.flops import (
    UncountedDeformableOpError,
    check_deformable_ops_counted,
    register_handles,
)

# B, Nq, M, L, P, D, S
B, NQ, M, L, P, D = 2, 5, 3, 2, 4, 6
SHAPES = [(4, 5), (2, 3)]
S = sum(h * w for h, w in SHAPES)
SAMPLES = B * NQ * M * L * P  # sampled points over all query heads: 240


@pytest.fixture(autouse=True)
def _compiled():
    if not ops.has_kernel("cpu"):
        pytest.fail(f"the compiled lite_detr op is not loaded ({ops.build_info()})")


def layout():
    spatial_shapes = torch.tensor(SHAPES, dtype=torch.int64)
    level_start_index = torch.tensor([0, SHAPES[0][0] * SHAPES[0][1]], dtype=torch.int64)
    return spatial_shapes, level_start_index


def locations(nq=NQ):
    return torch.rand(B, nq, M, L, P, 2)


class KDA(nn.Module):
    def __init__(self, with_key):
        super().__init__()
        self.with_key = with_key

    def forward(self, query, key, value, spatial_shapes, level_start_index, sampling_locations):
        return ops.kda(query, key if self.with_key else None, value, spatial_shapes, level_start_index,
                       sampling_locations)


class MSDA(nn.Module):
    def forward(self, value, spatial_shapes, level_start_index, sampling_locations, weights):
        return ops.msda(value, spatial_shapes, level_start_index, sampling_locations, weights)


def count(module, inputs, counting, register=True):
    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False)
    if register:
        register_handles(analysis, counting=counting, ignore_elementwise=True)
    with torch.no_grad():
        total = analysis.total()
    return analysis, total


@pytest.mark.parametrize("counting", ["paper", "full"])
@pytest.mark.parametrize("value_heads", [M, 1])
def test_kda_without_key_samples_once(counting, value_heads):
    Dv = D if value_heads == M else 7  # a shared value head may be wider (C + 1 in the samples placement)
    query = torch.randn(B, NQ, M, Dv)
    value = torch.randn(B, S, value_heads, Dv)
    analysis, total = count(KDA(False), (query, value, value, *layout(), locations()), counting)
    expected = 4 * SAMPLES * Dv  # key = value: one sampled tensor
    if counting == "full":
        expected += SAMPLES * Dv  # q·k, Dk = Dv
        expected += 3 * SAMPLES  # softmax over the L·P logits
        expected += SAMPLES * Dv  # weighted sum
    assert total == expected
    assert analysis.by_operator()["kda_forward"] == 4 * SAMPLES * Dv
    check_deformable_ops_counted(analysis)


@pytest.mark.parametrize("counting", ["paper", "full"])
def test_kda_with_key_samples_key_and_value(counting):
    Dk, Dv = 4, D
    query = torch.randn(B, NQ, M, Dk)
    key = torch.randn(B, S, M, Dk)
    value = torch.randn(B, S, M, Dv)
    analysis, total = count(KDA(True), (query, key, value, *layout(), locations()), counting)
    expected = 4 * SAMPLES * (Dk + Dv)
    if counting == "full":
        expected += SAMPLES * Dk + 3 * SAMPLES + SAMPLES * Dv
        assert analysis.by_operator()["kda_forward:qk"] == SAMPLES * Dk
        assert analysis.by_operator()["kda_forward:softmax"] == 3 * SAMPLES
        assert analysis.by_operator()["kda_forward:weighted_sum"] == SAMPLES * Dv
    assert total == expected


@pytest.mark.parametrize("counting", ["paper", "full"])
def test_msda(counting):
    value = torch.randn(B, S, M, D)
    weights = torch.rand(B, NQ, M, L, P)
    analysis, total = count(MSDA(), (value, *layout(), locations(), weights), counting)
    expected = 4 * SAMPLES * D + (SAMPLES * D if counting == "full" else 0)
    assert total == expected
    assert check_deformable_ops_counted(analysis) == {}


def _function_named(name):
    """A stand-in for detrex's CUDA autograd Function (same class name and signature), runnable on CPU."""

    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step):
        b, _, m, d = value.shape
        return value.new_zeros(b, sampling_locations.shape[1], m * d)

    def backward(ctx, grad):
        return None, None, None, None, None, None

    methods = {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    return type(name, (torch.autograd.Function,), methods)


class DetrexStyleMSDA(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, value, spatial_shapes, level_start_index, sampling_locations, weights):
        return self.function.apply(value, spatial_shapes, level_start_index, sampling_locations, weights, 64)


@pytest.mark.parametrize("name", ["MultiScaleDeformableAttnFunction", "MSDeformAttnFunction"])
@pytest.mark.parametrize("counting", ["paper", "full"])
def test_detrex_autograd_function(name, counting):
    module = DetrexStyleMSDA(_function_named(name))
    inputs = (torch.randn(B, S, M, D), *layout(), locations(), torch.rand(B, NQ, M, L, P))
    analysis, total = count(module, inputs, counting)
    assert total == 4 * SAMPLES * D + (SAMPLES * D if counting == "full" else 0)
    assert analysis.by_operator()[name] == 4 * SAMPLES * D
    assert check_deformable_ops_counted(analysis) == {}


def test_detrex_function_counts_zero_without_handles_and_the_check_says_so():
    module = DetrexStyleMSDA(_function_named("MultiScaleDeformableAttnFunction"))
    inputs = (torch.randn(B, S, M, D), *layout(), locations(), torch.rand(B, NQ, M, L, P))
    analysis, total = count(module, inputs, "paper", register=False)
    assert total == 0
    with pytest.raises(UncountedDeformableOpError, match="MultiScaleDeformableAttnFunction"):
        check_deformable_ops_counted(analysis)


def test_our_ops_are_unsupported_without_handles():
    value = torch.randn(B, S, M, D)
    analysis, total = count(MSDA(), (value, *layout(), locations(), torch.rand(B, NQ, M, L, P)), "paper",
                            register=False)
    assert total == 0
    with pytest.raises(UncountedDeformableOpError, match="lite_detr::msda_forward"):
        check_deformable_ops_counted(analysis)


class GridSample(nn.Module):
    def forward(self, x, grid):
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@pytest.mark.parametrize("counting", ["paper", "full"])
def test_grid_sample_four_per_output(counting):
    x = torch.randn(2, 3, 5, 6)
    grid = torch.rand(2, 4, 7, 2) * 2 - 1
    analysis, total = count(GridSample(), (x, grid), counting)
    assert total == 4 * (2 * 3 * 4 * 7)
    assert check_deformable_ops_counted(analysis) == {}


class Softmax(nn.Module):
    def forward(self, x):
        return x.softmax(-1) * 2 + 1


@pytest.mark.parametrize("counting, expected", [("paper", 0), ("full", 3 * 2 * 3 * 4)])
def test_softmax_free_in_paper_mode_counted_in_full(counting, expected):
    analysis, total = count(Softmax(), (torch.randn(2, 3, 4),), counting)
    assert total == expected
    assert analysis.unsupported_ops() == {}  # mul/add are free and listed, so fvcore does not warn


def test_register_handles_rejects_unknown_mode():
    analysis = FlopCountAnalysis(Softmax(), (torch.randn(2, 3),))
    with pytest.raises(ValueError, match="counting must be one of"):
        register_handles(analysis, counting="exact")


class Einsum(nn.Module):
    def forward(self, a, b):
        return torch.einsum("bqmc,mdc->bqmd", a, b)


def test_einsum_counted_exactly():
    """fvcore's einsum handle rounds numpy's printed count (1.306e+04 -> 6530); ours is exact."""
    a, b = torch.randn(1, 24, 2, 17), torch.randn(2, 8, 17)
    _, total = count(Einsum(), (a, b), "paper")
    assert total == 1 * 24 * 2 * 17 * 8


class MaskedScores(nn.Module):
    def forward(self, mask, q, k):
        return torch.baddbmm(mask, q, k.transpose(1, 2))


@pytest.mark.parametrize("counting, expected", [("paper", 0), ("full", 6 * 5 * 4 * 7)])
def test_baddbmm_counted_in_full_mode(counting, expected):
    inputs = (torch.zeros(6, 5, 7), torch.randn(6, 5, 4), torch.randn(6, 7, 4))
    analysis, total = count(MaskedScores(), inputs, counting)
    assert total == expected
    assert ("aten::baddbmm" in analysis.unsupported_ops()) == (counting == "paper")
