"""Compiled multi-scale deformable attention with given weights (ops.msda): reference, gradcheck, opcheck."""
import pytest
import torch

from lite_detr_plugin import ops

from .helpers import (
    MSDA_GRAD_NAMES,
    call_msda,
    call_msda_reference,
    forward_backward,
    make_inputs,
    nudge_off_kinks,
    require_kernel,
)


@pytest.fixture(autouse=True)
def _compiled_cpu_kernel():
    require_kernel("cpu")


def case(id, dim, **inputs):
    """``dim`` is the value dim Dv (make_inputs' value_dim defaults to key_dim)."""
    return pytest.param(dict(inputs, key_dim=dim), id=id)


# Every value of every axis appears (see test_sweep_covers_every_axis); the
# value dims straddle the 32-channel block of the backward scatter.
MSDA_CASES = [
    case("L1-P1-M1-D8-B1-inside", shapes=((3, 5),), points=1, heads=1, dim=8, batch=1, num_query=4,
         locations="inside"),
    case("L2-P2-M2-D16-B2", shapes=((6, 4), (3, 2)), points=2, heads=2, dim=16, batch=2, num_query=7),
    case("L3-P3-M3-D30-B3-Mv1", shapes=((5, 7), (3, 4), (1, 2)), points=3, heads=3, value_heads=1, dim=30,
         batch=3, num_query=5),
    case("L4-P4-M4-D32-B2-pad", shapes=((8, 6), (4, 3), (2, 2), (1, 1)), points=4, heads=4, dim=32, batch=2,
         num_query=3, pad=True),
    case("L5-P8-M8-D64-B1", shapes=((8, 8), (4, 4), (2, 3), (1, 2), (1, 1)), points=8, heads=8, dim=64,
         batch=1, num_query=2),
    case("L2-P5-M5-D16-B3-Mv1-pad", shapes=((7, 9), (4, 5)), points=5, heads=5, value_heads=1, dim=16,
         batch=3, num_query=4, pad=True),
    case("L3-P6-M6-D8-B2-far", shapes=((6, 6), (3, 3), (2, 1)), points=6, heads=6, dim=8, batch=2,
         num_query=3, locations="far"),
    case("L1-P7-M7-D30-B1", shapes=((9, 4),), points=7, heads=7, dim=30, batch=1, num_query=3),
    case("Nq>S-L2-P3-M2-D8-B2", shapes=((2, 2), (1, 1)), points=3, heads=2, dim=8, batch=2, num_query=24),
    case("Nq>S-Mv1-M4-D16", shapes=((2, 3),), points=2, heads=4, value_heads=1, dim=16, batch=1, num_query=13),
    case("D257-Mv1-M8", shapes=((4, 4), (2, 2)), points=2, heads=8, value_heads=1, dim=257, batch=2,
         num_query=3),
    case("D257-Mv=M-pad", shapes=((3, 5),), points=3, heads=2, dim=257, batch=2, num_query=2, pad=True),
    case("borders", shapes=((8, 4), (4, 2), (1, 1)), points=4, heads=2, dim=8, batch=2, num_query=5,
         locations="borders"),
    case("borders-Mv1-pad", shapes=((4, 8), (2, 2)), points=3, heads=4, value_heads=1, dim=16, batch=3,
         num_query=3, locations="borders", pad=True),
]


def test_sweep_covers_every_axis():
    cases = [p.values[0] for p in MSDA_CASES]
    seen = lambda f: {f(c) for c in cases}  # noqa: E731
    assert seen(lambda c: len(c["shapes"])) >= {1, 2, 3, 4, 5}
    assert seen(lambda c: c["points"]) >= set(range(1, 9))
    assert seen(lambda c: c["heads"]) >= set(range(1, 9))
    assert seen(lambda c: c["key_dim"]) >= {8, 16, 30, 32, 64, 257}
    assert seen(lambda c: c["batch"]) >= {1, 2, 3}
    assert seen(lambda c: c.get("value_heads", c["heads"]) == 1) == {True, False}
    assert seen(lambda c: c.get("pad", False)) == {True, False}
    assert seen(lambda c: c.get("locations", "wide")) >= {"inside", "wide", "far", "borders"}
    S = lambda c: sum(h * w for h, w in c["shapes"])  # noqa: E731
    assert seen(lambda c: c["num_query"] < S(c)) == {True, False}


@pytest.mark.parametrize("inputs", MSDA_CASES)
def test_msda_matches_reference(inputs):
    x = make_inputs(**inputs)
    out, grads = forward_backward(call_msda, x.tensors, MSDA_GRAD_NAMES)
    ref_out, ref_grads = forward_backward(call_msda_reference, x.tensors, MSDA_GRAD_NAMES)
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-10, msg=lambda m: f"output: {m}")
    for name in MSDA_GRAD_NAMES:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-10, msg=lambda m: f"{name}: {m}")


def test_msda_unnormalised_and_negative_weights():
    """The op is linear in the weights: nothing assumes they sum to one or are positive."""
    x = make_inputs(shapes=((5, 4), (2, 2)), heads=3, points=3, num_query=4, batch=2)
    weights = torch.randn(x.attention_weights.shape, dtype=torch.float64) * 3
    args = {**x.tensors, "attention_weights": weights}
    out, grads = forward_backward(call_msda, args, MSDA_GRAD_NAMES)
    ref_out, ref_grads = forward_backward(call_msda_reference, args, MSDA_GRAD_NAMES)
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-10)
    for name in MSDA_GRAD_NAMES:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-10)


def test_msda_nonfinite_locations_are_outside():
    x = make_inputs(shapes=((5, 4), (2, 3)), heads=2, points=3, num_query=4, batch=2)
    loc = x.sampling_locations.clone()
    bad = torch.zeros(loc.shape, dtype=torch.bool)
    bad[0, 0, 0, 0, 0, 0] = bad[0, 1, 1, 1, 2, 1] = bad[1, 2, 0, 0, 1, 0] = bad[1, 3] = True
    values = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=loc.dtype)
    loc[bad] = values[torch.arange(int(bad.sum())) % 3]
    out, grads = forward_backward(call_msda, {**x.tensors, "sampling_locations": loc}, MSDA_GRAD_NAMES)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads.values())
    outside = torch.where(bad, torch.full_like(loc, -1e6), loc)
    ref_out, ref_grads = forward_backward(call_msda_reference, {**x.tensors, "sampling_locations": outside},
                                          MSDA_GRAD_NAMES)
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-10)
    for name in MSDA_GRAD_NAMES:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-10)


def test_msda_large_level_300x300():
    """A 300x300 level (S = 90,009); see test_kda_op.test_large_level_300x300 for the 64-bit caveat."""
    x = make_inputs(shapes=((300, 300), (3, 3)), heads=2, points=4, num_query=16, key_dim=8)
    loc = x.sampling_locations.clone()
    loc[:, :, :, 0, :2] = 0.9 + 0.1 * torch.rand(loc[:, :, :, 0, :2].shape, dtype=loc.dtype)
    x.tensors["sampling_locations"] = loc
    out, grads = forward_backward(call_msda, x.tensors, MSDA_GRAD_NAMES)
    ref_out, ref_grads = forward_backward(call_msda_reference, x.tensors, MSDA_GRAD_NAMES)
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-10)
    for name in MSDA_GRAD_NAMES:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-10)
    assert grads["value"][0, 85000:90000].abs().sum() > 0


def test_msda_empty_query_set():
    x = make_inputs(shapes=((4, 4),), heads=2, num_query=0, batch=2)
    out, grads = forward_backward(call_msda, x.tensors, MSDA_GRAD_NAMES)
    assert out.shape == (2, 0, 16)
    assert grads["value"].shape == x.value.shape and (grads["value"] == 0).all()


GRADCHECK_CASES = [
    # heads, value_heads, dim, shapes, points, batch
    pytest.param(1, 1, 1, ((3, 3),), 1, 1, id="D1-L1-P1-M1"),
    pytest.param(2, 2, 3, ((3, 4), (2, 2)), 2, 2, id="D3-L2-P2-M2-B2"),
    pytest.param(1, 1, 33, ((3, 3), (1, 2)), 1, 1, id="D33-L2-P1-M1"),
    pytest.param(3, 1, 2, ((3, 4), (2, 2), (1, 3)), 2, 1, id="Mv1-M3-D2-L3-P2"),
    pytest.param(2, 2, 2, ((2, 3),), 4, 1, id="D2-L1-P4-M2"),
]


@pytest.mark.parametrize("heads, value_heads, dim, shapes, points, batch", GRADCHECK_CASES)
def test_msda_gradcheck(heads, value_heads, dim, shapes, points, batch):
    x = make_inputs(heads=heads, value_heads=value_heads, key_dim=dim, shapes=shapes, points=points, batch=batch,
                    num_query=2)
    value = x.value.clone().requires_grad_()
    loc = nudge_off_kinks(x.sampling_locations, shapes).requires_grad_()
    weights = x.attention_weights.clone().requires_grad_()
    ss, lsi = x.spatial_shapes, x.level_start_index
    fn = lambda v, l, w: ops.msda(v, ss, lsi, l, w)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (value, loc, weights), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("value_heads", [2, 1], ids=["Mv=M", "Mv1"])
def test_msda_forward_opcheck(value_heads, dtype):
    x = make_inputs(shapes=((4, 3), (2, 2)), heads=2, value_heads=value_heads, points=2, num_query=3, batch=2,
                    dtype=dtype)
    args = [t.clone().requires_grad_() if t.is_floating_point() else t for t in x.msda_args()]
    result = torch.library.opcheck(torch.ops.lite_detr.msda_forward.default, tuple(args))
    assert result == {
        "test_schema": "SUCCESS",
        "test_autograd_registration": "SUCCESS",
        "test_faketensor": "SUCCESS",
        "test_aot_dispatch_dynamic": "SUCCESS",
    }
