"""Non-contiguous inputs are made contiguous inside the op (as torchvision and flash-attn do).

Every tensor argument in turn is given reversed strides (same shape and values) or is a
transposed view; outputs and gradients must equal those of the contiguous call exactly
(the op computes on the same contiguous data). Through the Python API and through a
direct ``torch.ops.lite_detr`` call.
"""
import pytest
import torch

from lite_detr_plugin import ops

from .helpers import MSDA_GRAD_NAMES, call_kda, call_msda, forward_backward, kda_grad_names, make_inputs, require_kernel


def every_other(t: torch.Tensor) -> torch.Tensor:
    """Same shape and values, every element followed by a gap in memory (stride 2 innermost)."""
    out = torch.stack([t, torch.full_like(t, 7)], -1)[..., 0]
    assert not out.is_contiguous()
    return out


def reversed_strides(t: torch.Tensor) -> torch.Tensor:
    """Same shape and values, reversed strides (1-D: every_other)."""
    if t.dim() < 2:
        return every_other(t)
    order = list(range(t.dim()))[::-1]
    out = t.permute(order).contiguous().permute(order)
    assert not out.is_contiguous()
    return out


def transposed_view(t: torch.Tensor) -> torch.Tensor:
    """A view of the same values laid out with the first two dims swapped in memory (1-D: every_other)."""
    if t.dim() < 2:
        return every_other(t)
    out = t.transpose(0, 1).contiguous().transpose(0, 1)
    assert not out.is_contiguous()
    return out


@pytest.fixture(autouse=True)
def _compiled_cpu_kernel():
    require_kernel("cpu")


def _inputs():
    return make_inputs(batch=2, num_query=3, heads=2, shapes=((4, 3), (2, 2)), points=2, key=True, key_dim=6,
                       value_dim=5, pad=True)


KDA_NAMES = ("query", "key", "value", "spatial_shapes", "level_start_index", "sampling_locations")
MSDA_NAMES = ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")


@pytest.mark.parametrize("layout", [reversed_strides, transposed_view], ids=["reversed", "transposed"])
@pytest.mark.parametrize("op, names", [("kda", KDA_NAMES), ("msda", MSDA_NAMES)])
def test_api_noncontiguous_matches_contiguous(op, names, layout):
    x = _inputs()
    call, grad_names = (call_kda(), kda_grad_names(x)) if op == "kda" else (call_msda, MSDA_GRAD_NAMES)
    out, grads = forward_backward(call, x.tensors, grad_names)
    for name in names:
        tensors = dict(x.tensors)
        tensors[name] = layout(tensors[name])
        got, got_grads = forward_backward(call, tensors, grad_names)
        assert torch.equal(got, out), f"{op}: non-contiguous {name} changed the output"
        for g in grad_names:
            assert torch.equal(got_grads[g], grads[g]), f"{op}: non-contiguous {name} changed grad of {g}"


def test_direct_op_and_backward_accept_noncontiguous():
    """The registered kernels themselves take any strides, the private backward ops too."""
    x = _inputs()
    t = x.tensors
    lib = torch.ops.lite_detr
    args = [t[n] for n in KDA_NAMES]
    out, lse = lib.kda_forward(*args, 0.4)
    grad_output = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(3))
    grads = lib._kda_backward(grad_output, *args, out, lse, 0.4)
    strided = [reversed_strides(a) for a in args]
    out2, lse2 = lib.kda_forward(*strided, 0.4)
    assert torch.equal(out2, out) and torch.equal(lse2, lse)
    grads2 = lib._kda_backward(reversed_strides(grad_output), *strided, reversed_strides(out), lse, 0.4)
    for a, b in zip(grads2, grads):
        assert torch.equal(a, b)

    margs = [t[n] for n in MSDA_NAMES]
    m = lib.msda_forward(*margs)
    mgrads = lib._msda_backward(torch.ones_like(m), *margs)
    mstrided = [reversed_strides(a) for a in margs]
    assert torch.equal(lib.msda_forward(*mstrided), m)
    for a, b in zip(lib._msda_backward(reversed_strides(torch.ones_like(m)), *mstrided), mgrads):
        assert torch.equal(a, b)


def test_reference_fallback_accepts_noncontiguous():
    x = _inputs()
    expected = ops.kda_reference(*x.kda_args())
    args = [reversed_strides(a) if a is not None else a for a in x.kda_args()]
    torch.testing.assert_close(ops.kda_reference(*args), expected, rtol=1e-12, atol=1e-12)
