"""Compiled key-aware deformable attention (ops.kda) against the PyTorch reference, gradcheck, opcheck, compile."""
import pytest
import torch

from lite_detr_plugin import ops

from .helpers import (
    call_kda,
    call_kda_reference,
    forward_backward,
    kda_grad_names,
    make_inputs,
    nudge_off_kinks,
    require_kernel,
)


@pytest.fixture(autouse=True)
def _compiled_cpu_kernel():
    require_kernel("cpu")


def case(id, *, scale=None, **inputs):
    return pytest.param(dict(inputs), scale, id=id)


# Hand-picked sweep: every value of every axis appears at least once (checked by
# test_sweep_covers_every_axis below) and the interesting pairs are combined:
# Mv=1 with key/shared/pad/odd dims, Dk != Dv both ways, channel counts below,
# at and above the 32-channel block of the backward scatter.
KDA_CASES = [
    case("L1-P1-M1-D8-B1-shared-inside", shapes=((3, 5),), points=1, heads=1, key_dim=8, batch=1, num_query=4,
         locations="inside"),
    case("L2-P2-M2-D16-B2-key", shapes=((6, 4), (3, 2)), points=2, heads=2, key_dim=16, batch=2, num_query=7,
         key=True),
    case("L3-P3-M3-D30-B3-shared-Mv1", shapes=((5, 7), (3, 4), (1, 2)), points=3, heads=3, value_heads=1,
         key_dim=30, batch=3, num_query=5),
    case("L4-P4-M4-D32-B2-key-pad", shapes=((8, 6), (4, 3), (2, 2), (1, 1)), points=4, heads=4, key_dim=32,
         batch=2, num_query=3, key=True, pad=True),
    case("L5-P8-M8-D64-B1-shared", shapes=((8, 8), (4, 4), (2, 3), (1, 2), (1, 1)), points=8, heads=8, key_dim=64,
         batch=1, num_query=2),
    case("L2-P5-M5-D16-B3-key-Mv1-pad", shapes=((7, 9), (4, 5)), points=5, heads=5, value_heads=1, key_dim=16,
         batch=3, num_query=4, key=True, pad=True),
    case("L3-P6-M6-D8-B2-shared-pad", shapes=((6, 6), (3, 3), (2, 1)), points=6, heads=6, key_dim=8, batch=2,
         num_query=3, pad=True),
    case("L1-P7-M7-D30-B1-key-far", shapes=((9, 4),), points=7, heads=7, key_dim=30, batch=1, num_query=3,
         key=True, locations="far"),
    case("Nq>S-L2-P3-M2-D8-B2-key", shapes=((2, 2), (1, 1)), points=3, heads=2, key_dim=8, batch=2, num_query=24,
         key=True),
    case("Nq>S-L1-P2-M4-D16-B1-shared-Mv1", shapes=((2, 3),), points=2, heads=4, value_heads=1, key_dim=16,
         batch=1, num_query=13),
    case("Dk16<Dv64-key", shapes=((6, 6), (3, 3)), points=2, heads=4, key_dim=16, value_dim=64, batch=2,
         num_query=4, key=True),
    case("Dk64>Dv8-key-Mv1", shapes=((5, 4), (2, 2)), points=3, heads=2, value_heads=1, key_dim=64, value_dim=8,
         batch=1, num_query=5, key=True),
    case("Dk8-Dv257-key-Mv1", shapes=((4, 4), (2, 2)), points=2, heads=4, value_heads=1, key_dim=8, value_dim=257,
         batch=2, num_query=3, key=True),
    case("D257-shared-Mv1-M8", shapes=((4, 4), (2, 2)), points=2, heads=8, value_heads=1, key_dim=257, batch=2,
         num_query=3),
    case("D257-shared-Mv=M-pad", shapes=((3, 5),), points=3, heads=2, key_dim=257, batch=2, num_query=2, pad=True),
    case("scale0.37-key-Dk30-Dv16", shapes=((5, 5), (2, 3)), points=4, heads=3, key_dim=30, value_dim=16, batch=2,
         num_query=3, key=True, scale=0.37),
    case("scale4-sharp-softmax-shared", shapes=((6, 5), (3, 3)), points=8, heads=2, key_dim=16, batch=1,
         num_query=4, query_scale=3.0, scale=4.0),
    case("far-outside-shared-Mv1", shapes=((4, 6), (2, 3)), points=4, heads=3, value_heads=1, key_dim=8, batch=2,
         num_query=4, locations="far"),
    case("borders-key", shapes=((8, 4), (4, 2), (1, 1)), points=4, heads=2, key_dim=8, batch=2, num_query=5,
         key=True, locations="borders"),
    case("borders-shared-Mv1-pad", shapes=((4, 8), (2, 2)), points=3, heads=4, value_heads=1, key_dim=16, batch=3,
         num_query=3, locations="borders", pad=True),
]


def test_sweep_covers_every_axis():
    cases = [p.values[0] for p in KDA_CASES]
    seen = lambda f: {f(c) for c in cases}  # noqa: E731
    assert seen(lambda c: len(c["shapes"])) >= {1, 2, 3, 4, 5}
    assert seen(lambda c: c["points"]) >= set(range(1, 9))
    assert seen(lambda c: c["heads"]) >= set(range(1, 9))
    assert seen(lambda c: c["key_dim"]) >= {8, 16, 30, 32, 64, 257}
    assert seen(lambda c: c.get("batch", 1)) >= {1, 2, 3}
    assert seen(lambda c: c.get("value_heads", c["heads"]) == 1) == {True, False}
    assert seen(lambda c: c.get("key", False)) == {True, False}
    assert seen(lambda c: c.get("pad", False)) == {True, False}
    assert seen(lambda c: c.get("locations", "wide")) >= {"inside", "wide", "far", "borders"}
    S = lambda c: sum(h * w for h, w in c["shapes"])  # noqa: E731
    assert seen(lambda c: c["num_query"] < S(c)) == {True, False}
    assert any(c.get("value_dim", c["key_dim"]) != c["key_dim"] for c in cases)
    assert any(p.values[1] is not None for p in KDA_CASES)


@pytest.mark.parametrize("inputs, scale", KDA_CASES)
def test_kda_matches_reference(inputs, scale):
    x = make_inputs(**inputs)
    names = kda_grad_names(x)
    out, grads = forward_backward(call_kda(scale), x.tensors, names)
    ref_out, ref_grads = forward_backward(call_kda_reference(scale), x.tensors, names)
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-10, msg=lambda m: f"output: {m}")
    for name in names:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-10, msg=lambda m: f"{name}: {m}")


def test_kda_default_scale_is_inverse_sqrt_key_dim():
    x = make_inputs(key_dim=16, value_dim=4, key=True, shapes=((4, 4),), heads=2, points=3)
    out = ops.kda(*x.kda_args())
    torch.testing.assert_close(out, ops.kda(*x.kda_args(), scale=0.25), rtol=0, atol=0)
    assert not torch.allclose(out, ops.kda(*x.kda_args(), scale=0.5))


def test_kda_float32_matches_float64_reference():
    x = make_inputs(shapes=((6, 5), (3, 3)), points=4, heads=4, key_dim=32, batch=2, num_query=6, key=True,
                    dtype=torch.float32)
    names = kda_grad_names(x)
    out, grads = forward_backward(call_kda(), x.tensors, names)
    ref_out, ref_grads = forward_backward(call_kda_reference(), x.tensors, names, leaf_dtype=torch.float64)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-4, atol=1e-5)
    for name in names:
        scale = ref_grads[name].abs().max().item()
        torch.testing.assert_close(grads[name].double(), ref_grads[name], rtol=1e-4, atol=1e-4 * scale)


# ---------------------------------------------------------------- edge cases


def test_gradient_at_lower_support_border():
    """At pixel coordinate -1 (x = -0.5 / W) the sample is zero and bilinear interpolation has a kink.

    grid_sample (the reference) returns the right derivative there, the kernel
    treats the point as outside (left derivative, zero). Either one-sided
    derivative is a valid subgradient; anything else is a bug.
    """
    W = H = 4
    x = make_inputs(shapes=((H, W),), heads=1, points=1, num_query=1, key=True, key_dim=3)
    x.tensors["sampling_locations"] = torch.tensor([-0.5 / W, 0.4], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    _, grads = forward_backward(call_kda(), x.tensors, ["sampling_locations"])
    _, ref = forward_backward(call_kda_reference(), x.tensors, ["sampling_locations"])
    got, right = grads["sampling_locations"].flatten(), ref["sampling_locations"].flatten()
    assert right[0] != 0  # the test is only meaningful if the two one-sided derivatives differ
    assert got[1] == 0 and right[1] == 0
    assert got[0] == 0 or torch.isclose(got[0], right[0], rtol=1e-12, atol=0)


@pytest.mark.parametrize("key", [True, False], ids=["key", "shared"])
def test_nonfinite_locations_are_outside(key):
    """NaN / ±inf coordinates sample zeros: finite outputs and gradients, equal to a far-outside location."""
    x = make_inputs(shapes=((5, 4), (2, 3)), heads=2, points=3, num_query=4, batch=2, key=key, value_heads=1)
    loc = x.sampling_locations.clone()
    bad = torch.zeros(loc.shape, dtype=torch.bool)
    bad[0, 0, 0, 0, 0, 0] = bad[0, 1, 1, 1, 2, 1] = bad[1, 2, 0, 0, 1, 0] = bad[1, 3, :, :, :, :] = True
    values = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=loc.dtype)
    loc[bad] = values[torch.arange(int(bad.sum())) % 3]
    names = kda_grad_names(x)
    out, grads = forward_backward(call_kda(), {**x.tensors, "sampling_locations": loc}, names)
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert (grads["sampling_locations"][bad] == 0).all()
    outside = torch.where(bad, torch.full_like(loc, 1e6), loc)
    ref_out, ref_grads = forward_backward(call_kda_reference(), {**x.tensors, "sampling_locations": outside}, names)
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-10)
    for name in names:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-10)


def test_all_samples_outside_gives_zero_output_and_no_query_gradient():
    """Every sample outside: zero keys give a uniform softmax over zero values."""
    x = make_inputs(shapes=((4, 4), (2, 2)), heads=2, points=3, num_query=3, key=True)
    x.tensors["sampling_locations"] = x.sampling_locations + 3.0
    names = kda_grad_names(x)
    out, grads = forward_backward(call_kda(), x.tensors, names)
    assert (out == 0).all()
    for name in names:
        assert (grads[name] == 0).all(), name


def test_empty_query_set():
    x = make_inputs(shapes=((4, 4),), heads=2, num_query=0, key=True, batch=2)
    names = kda_grad_names(x)
    out, grads = forward_backward(call_kda(), x.tensors, names)
    assert out.shape == (2, 0, 2 * 8)
    assert grads["value"].shape == x.value.shape and (grads["value"] == 0).all()
    assert grads["key"].shape == x.key.shape and (grads["key"] == 0).all()


def test_large_level_300x300():
    """S = 90,009 tokens, samples concentrated near the far corner so the large row indices are used.

    Indices past 2**31 elements (the 64-bit indexing path) would need many GiB
    of value memory; that is out of reach of the CPU test budget, so this only
    checks that a large level is addressed correctly.
    """
    x = make_inputs(shapes=((300, 300), (3, 3)), heads=2, points=4, num_query=16, key=True, key_dim=8)
    loc = x.sampling_locations.clone()
    loc[:, :, :, 0, :2] = 0.9 + 0.1 * torch.rand(loc[:, :, :, 0, :2].shape, dtype=loc.dtype)
    x.tensors["sampling_locations"] = loc
    names = kda_grad_names(x)
    out, grads = forward_backward(call_kda(), x.tensors, names)
    ref_out, ref_grads = forward_backward(call_kda_reference(), x.tensors, names)
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-10)
    for name in names:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-10)
    assert grads["value"][0, 85000:90000].abs().sum() > 0  # the far corner did receive gradient


def test_backward_is_deterministic():
    x = make_inputs(shapes=((8, 8), (4, 4)), heads=4, value_heads=1, points=4, num_query=32, batch=2,
                    key_dim=40, dtype=torch.float32)
    names = kda_grad_names(x)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(max(2, threads))
        _, first = forward_backward(call_kda(), x.tensors, names)
        _, second = forward_backward(call_kda(), x.tensors, names)
    finally:
        torch.set_num_threads(threads)
    for name in names:
        assert torch.equal(first[name], second[name]), name


# ---------------------------------------------------------------- gradcheck


GRADCHECK_CASES = [
    # id, key, heads, value_heads, key_dim, value_dim, shapes, points, batch, scale
    pytest.param(True, 2, 2, 3, 5, ((3, 4), (2, 2)), 2, 2, None, id="key-Dk3-Dv5-L2-P2-M2-B2"),
    pytest.param(True, 1, 1, 33, 2, ((3, 3),), 1, 1, None, id="key-Dk33-Dv2-L1-P1"),
    pytest.param(True, 3, 1, 2, 3, ((4, 3), (2, 2)), 2, 1, 0.8, id="key-Mv1-M3-Dk2-Dv3-scale0.8"),
    pytest.param(False, 2, 2, 4, 4, ((3, 4), (2, 2), (1, 3)), 2, 1, None, id="shared-D4-L3-P2-M2"),
    pytest.param(False, 1, 1, 33, 33, ((3, 3),), 3, 1, None, id="shared-D33-L1-P3"),
    pytest.param(False, 2, 1, 3, 3, ((3, 3), (2, 2)), 4, 2, None, id="shared-Mv1-M2-D3-L2-P4-B2"),
]


@pytest.mark.parametrize("key, heads, value_heads, key_dim, value_dim, shapes, points, batch, scale", GRADCHECK_CASES)
def test_kda_gradcheck(key, heads, value_heads, key_dim, value_dim, shapes, points, batch, scale):
    x = make_inputs(key=key, heads=heads, value_heads=value_heads, key_dim=key_dim, value_dim=value_dim,
                    shapes=shapes, points=points, batch=batch, num_query=2)
    loc = nudge_off_kinks(x.sampling_locations, shapes).requires_grad_()
    query = x.query.clone().requires_grad_()
    value = x.value.clone().requires_grad_()
    ss, lsi = x.spatial_shapes, x.level_start_index
    if key:
        key_t = x.key.clone().requires_grad_()
        fn = lambda q, k, v, l: ops.kda(q, k, v, ss, lsi, l, scale=scale)  # noqa: E731
        args = (query, key_t, value, loc)
    else:
        fn = lambda q, v, l: ops.kda(q, None, v, ss, lsi, l, scale=scale)  # noqa: E731
        args = (query, value, loc)
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------- opcheck and compile

OPCHECK_OK = {
    "test_schema": "SUCCESS",
    "test_autograd_registration": "SUCCESS",
    "test_faketensor": "SUCCESS",
    "test_aot_dispatch_dynamic": "SUCCESS",
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("key, value_heads", [(True, 2), (False, 2), (False, 1)], ids=["key", "shared", "shared-Mv1"])
def test_kda_forward_opcheck(key, value_heads, dtype):
    x = make_inputs(shapes=((4, 3), (2, 2)), heads=2, value_heads=value_heads, points=2, num_query=3, batch=2,
                    key=key, dtype=dtype)
    args = [t.clone().requires_grad_() if t is not None and t.is_floating_point() else t for t in x.kda_args()]
    result = torch.library.opcheck(torch.ops.lite_detr.kda_forward.default, (*args, 0.3))
    assert result == OPCHECK_OK


def test_compile_fullgraph_matches_eager():
    """kda (key given and shared) and msda under torch.compile(fullgraph=True): forward and backward."""
    x = make_inputs(shapes=((6, 5), (3, 3)), heads=2, points=3, num_query=5, batch=2, key=True, key_dim=8,
                    dtype=torch.float32)
    ss, lsi = x.spatial_shapes, x.level_start_index

    def f(query, key, value, loc, weights):
        a = ops.kda(query, key, value, ss, lsi, loc)
        b = ops.kda(query, None, value, ss, lsi, loc, scale=0.5)
        c = ops.msda(value, ss, lsi, loc, weights)
        return a * 2 + b.sin() + c * c

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    names = ["query", "key", "value", "sampling_locations", "attention_weights"]
    run = lambda fn: forward_backward(lambda a: fn(*(a[n] for n in names)), x.tensors, names)  # noqa: E731
    out, grads = run(compiled)
    ref_out, ref_grads = run(f)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    for name in names:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")
    torch._dynamo.reset()


def test_compile_calls_the_compiled_op():
    """The traced graph holds torch.ops.lite_detr.kda_forward, not the reference (grid_sample)."""
    x = make_inputs(shapes=((4, 4),), heads=2, key=True, dtype=torch.float32)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    fn = torch.compile(lambda *a: ops.kda(*a), backend=backend, fullgraph=True)
    torch.testing.assert_close(fn(*x.kda_args()), ops.kda(*x.kda_args()))
    targets = {str(n.target) for g in graphs for n in g.graph.nodes if n.op == "call_function"}
    assert any("lite_detr.kda_forward" in t for t in targets), targets
    assert not any("grid_sample" in t for t in targets), targets
    torch._dynamo.reset()
