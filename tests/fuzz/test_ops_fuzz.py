"""Fuzzing the compiled KDA / MSDA ops against the PyTorch reference (the paper's equations).

Random valid layouts (levels, map sizes, heads, shared value head, separate or
shared keys, head dims, points, Nq = 0), all four dtypes, and sampling locations
with NaN / ±inf / huge / far-outside entries. Contract:

* the op never crashes and equals the reference;
* non-finite or far-away locations sample zeros (as outside the map): finite
  query/key/value give finite outputs and gradients (the README's NaN/inf policy);
* malformed arguments raise ValueError naming the argument.
"""
import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from lite_detr_plugin import ops

from .budget import budget

pytestmark = pytest.mark.skipif(not ops.has_kernel("cpu"), reason="the compiled CPU op is not built")

SPECIAL = [math.nan, math.inf, -math.inf, 1e30, -1e30, 3.0e38, 2.0, -1.0]  # all wholly outside every map
TOLERANCE = {  # (rtol, atol) of the op against the reference, both accumulating in float32/float64
    torch.float64: (1e-9, 1e-10),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 2e-3),
    torch.bfloat16: (2e-2, 1.6e-2),
}


@st.composite
def layouts(draw, dtypes=tuple(TOLERANCE), num_queries=(0, 1, 2, 5)):
    num_levels = draw(st.integers(1, 4))
    heads = draw(st.sampled_from([1, 2, 4, 8]))
    shared_key = draw(st.booleans())
    dim = draw(st.sampled_from([1, 3, 8, 16, 30, 32, 64]))
    return dict(
        batch=draw(st.integers(1, 2)),
        shapes=[(draw(st.integers(1, 6)), draw(st.integers(1, 6))) for _ in range(num_levels)],
        heads=heads,
        value_heads=draw(st.sampled_from([1, heads])),
        dim=dim,
        key_dim=dim if shared_key else draw(st.sampled_from([1, 8, 32])),
        shared_key=shared_key,
        points=draw(st.integers(1, 4)),
        num_query=draw(st.sampled_from(num_queries)),
        dtype=draw(st.sampled_from(dtypes)),
        seed=draw(st.integers(0, 2**20)),
        special=draw(st.lists(st.sampled_from(SPECIAL), max_size=6)),
    )


def make(layout, requires_grad=False):
    g = torch.Generator().manual_seed(layout["seed"])
    shapes = torch.tensor(layout["shapes"], dtype=torch.int64)
    areas = shapes.prod(1)
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    B, Nq, M, Mv, S = layout["batch"], layout["num_query"], layout["heads"], layout["value_heads"], int(areas.sum())
    L, P, dtype = len(layout["shapes"]), layout["points"], layout["dtype"]

    def randn(*size):
        return torch.randn(*size, generator=g, dtype=torch.float64).to(dtype)

    t = dict(
        query=randn(B, Nq, M, layout["key_dim"]),
        key=None if layout["shared_key"] else randn(B, S, Mv, layout["key_dim"]),
        value=randn(B, S, Mv, layout["dim"]),
        locations=(torch.rand(B, Nq, M, L, P, 2, generator=g, dtype=torch.float64) * 1.5 - 0.25).to(
            torch.float64 if dtype == torch.float64 else torch.float32
        ),
        weights=torch.rand(B, Nq, M, L, P, generator=g, dtype=torch.float64).to(dtype).softmax(-1),
    )
    flat = t["locations"].view(-1)
    if flat.numel():
        where = torch.randint(0, flat.numel(), (len(layout["special"]),), generator=g)
        flat[where] = torch.tensor(layout["special"], dtype=flat.dtype)
    if requires_grad:
        for name in ("query", "key", "value", "locations", "weights"):
            if t[name] is not None:
                t[name].requires_grad_(True)
    return t, shapes, starts


def check_close(got, expected, dtype, what):
    rtol, atol = TOLERANCE[dtype]
    assert got.dtype == expected.dtype, what
    assert torch.isfinite(got).all() and torch.isfinite(expected).all(), f"{what}: non-finite"
    torch.testing.assert_close(got.double(), expected.double(), rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


@budget(120)
@given(layouts())
def test_kda_forward_equals_the_reference(layout):
    t, shapes, starts = make(layout)
    args = (t["query"], t["key"], t["value"], shapes, starts, t["locations"])
    out = ops.kda(*args)
    B, Nq, M = layout["batch"], layout["num_query"], layout["heads"]
    assert out.shape == (B, Nq, M * layout["dim"])
    check_close(out, ops.kda_reference(*args), layout["dtype"], "kda output")


@budget(80)
@given(layouts())
def test_msda_forward_equals_the_reference(layout):
    t, shapes, starts = make(layout)
    args = (t["value"], shapes, starts, t["locations"], t["weights"])
    check_close(ops.msda(*args), ops.msda_reference(*args), layout["dtype"], "msda output")


def _grads(fn, tensors, names, seed):
    out = fn()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (out.double() * weights).sum().backward()
    return out, {n: tensors[n].grad for n in names if tensors[n] is not None}


@budget(60)
@given(layouts(dtypes=(torch.float64,)))
def test_kda_gradients_equal_the_reference(layout):
    """float64: every gradient, including those of the non-finite locations (zero)."""
    names = ("query", "key", "value", "locations")
    t1, shapes, starts = make(layout, requires_grad=True)
    t2, _, _ = make(layout, requires_grad=True)
    _, got = _grads(lambda: ops.kda(t1["query"], t1["key"], t1["value"], shapes, starts, t1["locations"]),
                    t1, names, layout["seed"])
    _, want = _grads(lambda: ops.kda_reference(t2["query"], t2["key"], t2["value"], shapes, starts, t2["locations"]),
                     t2, names, layout["seed"])
    for name in got:
        if got[name] is None or want[name] is None:  # Nq = 0: nothing reaches these
            assert layout["num_query"] == 0 or name == "key"
            continue
        check_close(got[name], want[name], torch.float64, f"grad {name}")


@budget(40)
@given(layouts(dtypes=(torch.float64,)))
def test_msda_gradients_equal_the_reference(layout):
    names = ("value", "locations", "weights")
    t1, shapes, starts = make(layout, requires_grad=True)
    t2, _, _ = make(layout, requires_grad=True)
    _, got = _grads(lambda: ops.msda(t1["value"], shapes, starts, t1["locations"], t1["weights"]), t1, names, 1)
    _, want = _grads(lambda: ops.msda_reference(t2["value"], shapes, starts, t2["locations"], t2["weights"]),
                     t2, names, 1)
    for name in got:
        if got[name] is None or want[name] is None:
            assert layout["num_query"] == 0
            continue
        check_close(got[name], want[name], torch.float64, f"grad {name}")


def test_non_finite_locations_sample_zeros():
    """The policy, directly: a NaN/inf/huge location is a sample outside the map (zeros)."""
    shapes, starts = torch.tensor([[3, 4]]), torch.tensor([0])
    value = torch.randn(1, 12, 1, 8, dtype=torch.float64) + 5.0
    weights = torch.ones(1, 1, 1, 1, 1, dtype=torch.float64)
    for bad in SPECIAL:
        loc = torch.tensor([bad, 0.5], dtype=torch.float64).view(1, 1, 1, 1, 1, 2).requires_grad_(True)
        out = ops.msda(value, shapes, starts, loc, weights)
        out.sum().backward()
        assert torch.equal(out, torch.zeros_like(out)), bad
        assert torch.equal(loc.grad, torch.zeros_like(loc)), bad
        ref = ops.msda_reference(value, shapes, starts, loc.detach(), weights)
        assert torch.equal(ref, torch.zeros_like(ref)), bad


def test_nan_values_propagate_to_the_outputs_that_sample_them():
    """NaN in the inputs other than locations is not hidden: the queries that read it give NaN."""
    shapes, starts = torch.tensor([[4, 4]]), torch.tensor([0])
    value = torch.randn(1, 16, 1, 8, dtype=torch.float64)
    value[0, 0, 0, 0] = math.nan  # pixel (0, 0)
    loc = torch.tensor([[0.125, 0.125], [0.875, 0.875]], dtype=torch.float64).view(1, 2, 1, 1, 1, 2)
    query = torch.randn(1, 2, 1, 8, dtype=torch.float64)
    for out in (ops.kda(query, None, value, shapes, starts, loc), ops.kda_reference(query, None, value, shapes, starts, loc)):
        assert torch.isnan(out[0, 0]).any()  # reads pixel (0, 0)
        assert torch.isfinite(out[0, 1]).all()  # reads pixel (3, 3) only


ARGUMENTS = ("query", "key", "value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")


@st.composite
def malformed(draw):
    """A valid float32 call with one argument broken: shape, dtype, device-free kinds."""
    layout = draw(layouts(dtypes=(torch.float32,), num_queries=(1, 3)))
    t, shapes, starts = make(layout)
    kwargs = dict(query=t["query"], key=t["key"], value=t["value"], spatial_shapes=shapes, level_start_index=starts,
                  sampling_locations=t["locations"], attention_weights=t["weights"])
    names = [n for n in ARGUMENTS if kwargs[n] is not None]
    target = draw(st.sampled_from(names))
    how = draw(st.sampled_from(["drop_dim", "add_dim", "grow", "dtype", "not_tensor", "non_contiguous"]))
    x = kwargs[target]
    if how == "drop_dim":
        x = x[0]
    elif how == "add_dim":
        x = x.unsqueeze(0)
    elif how == "grow":
        dim = draw(st.integers(0, x.dim() - 1))
        sizes = list(x.shape)
        sizes[dim] += draw(st.integers(1, 3))
        if target == "value":  # still valid: another Dv beside a separate key, or Mv grown to M
            assume(not (dim == 3 and not layout["shared_key"]))
            assume(not (dim == 2 and sizes[2] == layout["heads"] and layout["shared_key"]))
        x = torch.zeros(sizes, dtype=x.dtype)
    elif how == "dtype":
        x = x.to(torch.int32) if x.is_floating_point() else x.float()
    elif how == "not_tensor":
        x = x.tolist()
    else:
        if x.dim() < 2 or x.shape[0] < 2 and x.shape[1] < 2:
            assume(False)
        # Non-contiguous inputs are accepted (the op makes them contiguous, see
        # tests/ops/test_noncontiguous.py): only a transpose that changes the shape is malformed.
        assume(x.shape[0] != x.shape[1])
        x = x.transpose(0, 1)
    kwargs[target] = x
    return target, how, kwargs


@budget(100)
@given(malformed(), st.sampled_from(["kda", "msda"]))
def test_malformed_arguments_are_refused_with_a_named_argument(case, op):
    target, how, kw = case
    if op == "kda":
        assume(target != "attention_weights")
        call = lambda: ops.kda(kw["query"], kw["key"], kw["value"], kw["spatial_shapes"],  # noqa: E731
                               kw["level_start_index"], kw["sampling_locations"])
    else:
        assume(target not in ("query", "key"))
        call = lambda: ops.msda(kw["value"], kw["spatial_shapes"], kw["level_start_index"],  # noqa: E731
                                kw["sampling_locations"], kw["attention_weights"])
    with pytest.raises((ValueError, RuntimeError)) as info:
        call()
    message = str(info.value)
    assert any(name in message for name in ARGUMENTS), (target, how, message)
