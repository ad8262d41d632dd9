"""The CUDA kernels (csrc/deformable_attn/cuda/cuda_kernels.cu), run on the host emulator, against the CPU ops.

Each case runs kda_forward, _kda_backward, msda_forward and _msda_backward on the emulator
(``torch.ops.lite_detr_emu``) and on the compiled CPU ops (``torch.ops.lite_detr``, the
specification), and compares every output and gradient; the backward of both gets the CPU
forward's output and logsumexp. It also checks, from the launch log, which kernel
instance ran (fast path: G lanes per group, shared key or not; generic path; shared
memory) and that the emulator found no warp-collective, alignment or shared-memory error.
A few cases compare with kda_reference / msda_reference (autograd) instead.

A subset of the cases the emulator was developed with, chosen to cover every kernel
instance family in a few minutes on 2 cores: fast path D=32/64 x shared/separate key x
Mv=1/M x 4 dtypes, generic path (D=8, 30, 257, Dk != Dv, misaligned tensors), multi-block
grid-stride loops, the opt-in shared memory branch and its limit, zero sizes, NaN / inf /
out-of-map locations, border locations, inconsistent level layouts.
"""
import pytest
import torch

from lite_detr_plugin import ops

from . import gen
from ..ops.helpers import make_inputs, nudge_off_kinks, require_kernel

cpu = torch.ops.lite_detr
F64, F32, F16, BF16 = torch.float64, torch.float32, torch.float16, torch.bfloat16
DTYPES = [F64, F32, F16, BF16]
# max |emu - cpu| <= tol * max(1, max |cpu|); gradients x4 in half precision, grad_loc x10 more.
TOL = {F64: 1e-10, F32: 2e-5, F16: 2e-2, BF16: 5e-2}
SHAPES = ((6, 5), (3, 4), (1, 2))
SCALAR_T = {F64: "double", F32: "float", F16: "Half", BF16: "BFloat16"}


@pytest.fixture(autouse=True)
def _compiled_cpu_kernel():
    require_kernel("cpu")


# ------------------------------------------------------------------ helpers
def special_locations(loc):
    """NaN, +-inf and out-of-map coordinates at a few places (any location is allowed)."""
    flat = loc.view(-1)
    for i, v in zip([0, 3, 5, 7, 9, 16], [float("nan"), float("inf"), -float("inf"), 2.5, -1.0, -0.3]):
        if i < flat.numel():
            flat[i] = v
    return loc


def moated(t, shift=0, fill=float("nan")):
    """Contiguous copy of a floating tensor inside a buffer filled with ``fill`` (a moat of at least
    8192 elements, a multiple of 16 bytes, on each side): a kernel reading near but outside the
    tensor gets NaN (or, for locations, 0.5: a hit, as a NaN location is a miss), which shows in the
    results. ``shift`` elements more of storage offset misalign the data pointer unless
    shift * itemsize is a multiple of 16."""
    if t is None or not t.is_floating_point():
        return t
    moat = max(t.numel(), 8192) // 16 * 16
    buf = torch.full((t.numel() + 2 * moat + shift,), fill, dtype=t.dtype)
    out = buf[moat + shift : moat + shift + t.numel()].view(t.shape)
    out.copy_(t)
    return out


def assert_matches(actual, expected, tol, what):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if expected.numel() == 0:
        return
    a, e = actual.double(), expected.double()
    unwritten = torch.isnan(a) & ~torch.isnan(e)
    assert not unwritten.any(), f"{what}: {int(unwritten.sum())} elements NaN (never written by the kernel?)"
    assert torch.equal(torch.isnan(a), torch.isnan(e)), f"{what}: NaN where the CPU op has none"
    finite = ~torch.isnan(e)
    err = (a[finite] - e[finite]).abs().max().item()
    bound = tol * max(1.0, e[finite].abs().max().item())
    assert err <= bound, f"{what}: max abs error {err:.3g} > {bound:.3g}"


def emu_call(emu, op, *args):
    """Runs an emulated op; returns (result, launches) and fails on any emulator error."""
    out = getattr(emu, op)(*args)
    launches, errors = emu.take_log()
    assert not errors, f"{op}: emulator errors:\n" + "\n".join(errors)
    return out, launches


def run_all(emu, x, scale=None, shift=None, grad_seed=1):
    """Compares the four ops on inputs ``x`` (tests.ops.helpers.Inputs); returns {op: launches}.

    The emulator gets NaN-moated copies of every input; shift: {argument name: extra storage
    offset in elements}.
    """
    t = dict(x.tensors)
    dtype = t["value"].dtype
    tol = TOL[dtype]
    gtol = tol * (4 if dtype in (F16, BF16) else 1)
    scale = t["query"].shape[-1] ** -0.5 if scale is None else scale
    e = {k: moated(v, (shift or {}).get(k, 0), 0.5 if k == "sampling_locations" else float("nan"))
         for k, v in t.items()}
    ss, st, loc, w = t["spatial_shapes"], t["level_start_index"], t["sampling_locations"], t["attention_weights"]
    log = {}

    (o, lse), log["kda_forward"] = emu_call(emu, "kda_forward", e["query"], e["key"], e["value"], ss, st,
                                             e["sampling_locations"], scale)
    o_c, lse_c = cpu.kda_forward(t["query"], t["key"], t["value"], ss, st, loc, scale)
    assert_matches(o, o_c, tol, "kda output")
    assert_matches(lse, lse_c, tol, "kda logsumexp")
    g = torch.Generator().manual_seed(grad_seed)
    go = torch.randn(o_c.shape, dtype=torch.float64, generator=g).to(dtype)
    grads, log["kda_backward"] = emu_call(emu, "_kda_backward", moated(go), e["query"], e["key"], e["value"], ss, st,
                                          e["sampling_locations"], moated(o_c), moated(lse_c), scale)
    grads_c = cpu._kda_backward(go, t["query"], t["key"], t["value"], ss, st, loc, o_c, lse_c, scale)
    for name, a, b in zip(["grad_query", "grad_key", "grad_value", "grad_loc"], grads, grads_c):
        assert_matches(a, b, gtol * (10 if name == "grad_loc" else 1), f"kda {name}")

    m, log["msda_forward"] = emu_call(emu, "msda_forward", e["value"], ss, st, e["sampling_locations"],
                                      e["attention_weights"])
    assert_matches(m, cpu.msda_forward(t["value"], ss, st, loc, w), tol, "msda output")
    grads, log["msda_backward"] = emu_call(emu, "_msda_backward", moated(go), e["value"], ss, st,
                                           e["sampling_locations"], e["attention_weights"])
    grads_c = cpu._msda_backward(go, t["value"], ss, st, loc, w)
    for name, a, b in zip(["grad_value", "grad_loc", "grad_weights"], grads, grads_c):
        assert_matches(a, b, gtol * (10 if name == "grad_loc" else 1), f"msda {name}")
    return log


def expect(log, op, path, dtype=None, dim=None, shared_key=None):
    """The launch of ``op`` was the ``path`` ('fast' or 'generic') kernel of this instance."""
    (launch,) = log[op]
    assert launch.get("kernel") == f"{op}_{path}_kernel", f"{op}: ran {launch}"
    if dtype is not None:
        assert launch["scalar_t"] == SCALAR_T[dtype], f"{op}: ran {launch}"
    if path == "fast":
        assert launch["G"] == dim * dtype.itemsize // 16, f"{op}: ran {launch}"
        if shared_key is not None:
            assert launch["shared_key"] == shared_key, f"{op}: ran {launch}"
    return launch


def inputs(dtype, dim, key=False, mv1=False, value_dim=None, batch=2, num_query=7, heads=3, shapes=SHAPES,
           points=2, locations="wide", special=True, seed=0, query_scale=1.0):
    """make_inputs with opmath locations; 2*7*3 = 42 groups by default, so that warps are partly
    filled (42 is no multiple of the 2, 4 or 8 groups a fast-path warp serves) and some warps idle."""
    opmath = F64 if dtype == F64 else F32
    x = make_inputs(batch=batch, num_query=num_query, heads=heads, value_heads=1 if mv1 else heads, key_dim=dim,
                    value_dim=value_dim, shapes=shapes, points=points, key=key, locations=locations, dtype=dtype,
                    loc_dtype=opmath, seed=seed, query_scale=query_scale)
    if special:
        special_locations(x.sampling_locations)
    return x


def check_paths(log, path, dtype, dim, key):
    for op in ("kda_forward", "kda_backward", "msda_forward", "msda_backward"):
        expect(log, op, path, dtype, dim, shared_key=None if op.startswith("msda") else not key)


# ------------------------------------------------------------------ emulator self checks
@pytest.mark.parametrize("which, error", [
    ("butterfly", None),
    ("divergent", "divergent warp collective"),
    ("early_exit", "the other 1 returned"),
    ("misaligned", "misaligned 16-byte load"),
    ("smem_overflow", "write past the 64 bytes"),
])
def test_emulator_checks_fire(emu, which, error):
    emu.emu_selftest(which)
    _, errors = emu.take_log()
    if error is None:
        assert errors == []
    else:
        assert errors and error in errors[0], errors


def test_emulator_requires_shared_memory_optin(emu):
    with pytest.raises(RuntimeError, match="without the cudaFuncSetAttribute opt-in"):
        emu.emu_selftest("smem_no_optin")
    emu.take_log()


# ------------------------------------------------------------------ fast path
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mv1", [False, True], ids=["Mv=M", "Mv=1"])
@pytest.mark.parametrize("key", [False, True], ids=["shared_key", "key"])
@pytest.mark.parametrize("dim", [32, 64])
def test_fast_path(emu, dim, key, mv1, dtype):
    points, shapes = (1, SHAPES) if key == mv1 else (4, SHAPES[:1])  # L*P = 3 or 4
    log = run_all(emu, inputs(dtype, dim, key=key, mv1=mv1, points=points, shapes=shapes, seed=dim + 2 * key + mv1))
    check_paths(log, "fast", dtype, dim, key)


def test_fast_path_at_nonzero_aligned_offset(emu):
    """A storage offset of 16 bytes keeps the fast path."""
    log = run_all(emu, inputs(F32, 32, key=True), shift={"query": 4, "key": 8, "value": 4})
    check_paths(log, "fast", F32, 32, True)


def test_fast_path_noncontiguous_grad_output(emu):
    x = inputs(F16, 64, key=False, num_query=5, heads=2)
    t = x.tensors
    o, lse = cpu.kda_forward(t["query"], None, t["value"], t["spatial_shapes"], t["level_start_index"],
                             t["sampling_locations"], 0.125)
    go = torch.randn(o.shape[0], o.shape[2], o.shape[1]).to(F16).transpose(1, 2)
    assert not go.is_contiguous()
    args = (t["query"], None, t["value"], t["spatial_shapes"], t["level_start_index"], t["sampling_locations"], o,
            lse, 0.125)
    grads, log = emu_call(emu, "_kda_backward", go, *args)
    for name, a, b in zip(["dq", "dk", "dv", "dloc"], grads, cpu._kda_backward(go.contiguous(), *args)):
        assert_matches(a, b, TOL[F16] * (40 if name == "dloc" else 4), name)
    expect({"kda_backward": log}, "kda_backward", "fast", F16, 64, shared_key=True)


# ------------------------------------------------------------------ generic path
# D = 8, 30, 257 in every dtype (key and Mv alternating), Dk != Dv, and D = 520 (> 16 channels per lane).
GENERIC = [(dtype, d, d, (i + j) % 2 == 1, (i // 2 + j) % 2 == 1) for j, d in enumerate((8, 30, 257))
           for i, dtype in enumerate(DTYPES)] + [
    (F32, 32, 64, True, False),  # fast-path dims, but Dk != Dv
    (F16, 16, 40, True, True),
    (F64, 64, 16, True, False),
    (BF16, 40, 24, True, False),
    (F32, 520, 520, False, False),
]


@pytest.mark.parametrize("dtype, dk, dv, key, mv1", GENERIC, ids=lambda v: str(v).replace("torch.", ""))
def test_generic_path(emu, dtype, dk, dv, key, mv1):
    small = dk > 64  # keep the wide head cheap
    x = inputs(dtype, dk, value_dim=dv, key=key, mv1=mv1, num_query=3 if small else 7, heads=2 if small else 3,
               seed=dk + dv)
    log = run_all(emu, x)
    for op in log:
        expect(log, op, "generic" if op.startswith("kda") or dv not in (32, 64) else "fast", dtype, dv)


@pytest.mark.parametrize("dtype, dim, key, shift, kda_path, msda_path", [
    (F32, 32, False, {"query": 1, "value": 1}, "generic", "generic"),
    (BF16, 64, True, {"key": 3}, "generic", "fast"),  # only the key misaligned: MSDA stays fast
    (F64, 32, True, {"query": 1}, "generic", "fast"),
], ids=["f32-all", "bf16-key", "f64-query"])
def test_misaligned_tensors_take_the_generic_path(emu, dtype, dim, key, shift, kda_path, msda_path):
    log = run_all(emu, inputs(dtype, dim, key=key, mv1=dtype == BF16, seed=5), shift=shift)
    for op in log:
        expect(log, op, kda_path if op.startswith("kda") else msda_path, dtype, dim)


# ------------------------------------------------------------------ launch shapes
@pytest.mark.parametrize("dim", [64, 30])
def test_multi_block_grid_stride(emu, dim):
    """3 emulated SMs: a grid of 3 blocks, each looping over several groups."""
    with emu.configured(sms=3):
        log = run_all(emu, inputs(F32, dim, key=True, batch=2, num_query=20, heads=4, shapes=SHAPES[:2], points=1))
    for op, (launch,) in log.items():
        assert launch["grid"] == 3, f"{op}: {launch}"


@pytest.mark.parametrize("dtype, dim", [(BF16, 32), (F32, 30)])
def test_reversed_lane_order(emu, dtype, dim):
    """Warps and lanes scheduled last to first: the result must not depend on the order."""
    with emu.configured(reverse_order=True):
        run_all(emu, inputs(dtype, dim, key=True, num_query=4, seed=9))


@pytest.mark.parametrize("dtype, points, blocks", [
    (F32, 200, {"kda_forward": 128, "kda_backward": 64, "msda_forward": 128, "msda_backward": 64}),
    (F64, 700, {op: 32 for op in ("kda_forward", "kda_backward", "msda_forward", "msda_backward")}),
], ids=["f32-LP200", "f64-LP700-optin"])
def test_generic_launch_shapes(emu, dtype, points, blocks):
    """Generic tables of L*P samples: 4, 2 or 1 warps per block in 48 KiB, beyond that the opt-in."""
    x = inputs(dtype, 30, key=True, batch=1, num_query=3 if dtype == F32 else 1, heads=2, shapes=((20, 20),),
               points=points, seed=3)
    log = run_all(emu, x)
    for op, (launch,) in log.items():
        assert launch["block"] == blocks[op], f"{op}: {launch}"
        assert (launch["smem"] > 48 * 1024) == (dtype == F64), f"{op}: {launch}"


@pytest.mark.parametrize("dtype, dim", [(F32, 32), (F32, 30)])
def test_long_sample_loop_and_large_logits(emu, dtype, dim):
    """L*P = 300 samples and logits of size ~30: the online softmax rescales many times."""
    x = inputs(dtype, dim, key=True, batch=1, num_query=3, heads=2, shapes=((10, 12),), points=300,
               query_scale=30.0, seed=7)
    log = run_all(emu, x)
    expect(log, "kda_forward", "fast" if dim == 32 else "generic", dtype, dim)


def test_shared_memory_limit_raises(emu):
    x = inputs(F64, 30, batch=1, num_query=1, heads=1, shapes=((20, 20),), points=700)
    t = x.tensors
    args = (t["query"], None, t["value"], t["spatial_shapes"], t["level_start_index"], t["sampling_locations"], 0.2)
    with emu.configured(smem_optin=64 * 1024):
        o, lse = cpu.kda_forward(*args)
        with pytest.raises(RuntimeError, match="bytes of shared memory"):
            emu._kda_backward(torch.ones_like(o), *args[:-1], o, lse, 0.2)
    launches, errors = emu.take_log()
    assert launches == [] and errors == []


# ------------------------------------------------------------------ sizes and locations
@pytest.mark.parametrize("dim", [32, 30])
@pytest.mark.parametrize("batch, num_query, heads", [(0, 3, 2), (2, 0, 2), (2, 3, 0)])
def test_zero_sizes(emu, dim, batch, num_query, heads):
    log = run_all(emu, inputs(F32, dim, key=True, mv1=heads == 0, batch=batch, num_query=num_query,
                              heads=heads, special=False))
    assert all(launches == [] for launches in log.values()), log


@pytest.mark.parametrize("dtype, dim", [(F32, 32), (F64, 30)])
def test_samples_outside_every_map(emu, dtype, dim):
    """Whole heads whose every sample misses (NaN, inf, far away): zero keys and values."""
    x = inputs(dtype, dim, key=True, locations="far", seed=4)
    loc = x.sampling_locations
    loc[0, 0] = float("nan")
    loc[0, 1, :2] = 3.0
    loc[1, 2, 1] = -float("inf")
    run_all(emu, x)


@pytest.mark.parametrize("dtype, dim", [(F64, 64), (F32, 8)])
def test_border_locations(emu, dtype, dim):
    """Exact pixel centres, borders and the first location past the support (power-of-two maps)."""
    run_all(emu, inputs(dtype, dim, key=dim == 64, shapes=((4, 8), (2, 2)), points=3, locations="borders",
                        special=False, seed=6))


# ------------------------------------------------------------------ reference oracle
@pytest.mark.parametrize("dim, path", [(32, "fast"), (30, "generic")])
def test_against_reference(emu, dim, path):
    """Forward against kda_reference / msda_reference, backward against their autograd gradients."""
    x = inputs(F64, dim, key=True, mv1=dim == 30, num_query=3, heads=2, locations="inside", special=False, seed=8)
    x.tensors["sampling_locations"] = nudge_off_kinks(x.sampling_locations, x.shapes)
    t = x.tensors
    ss, st, w = t["spatial_shapes"], t["level_start_index"], t["attention_weights"]
    leaves = {k: t[k].clone().requires_grad_() for k in ("query", "key", "value", "sampling_locations")}
    q, k, v, loc = leaves.values()
    scale = dim**-0.5
    ref = ops.kda_reference(q, k, v, ss, st, loc, scale)
    go = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [q, k, v, loc], go)
    (o, lse), log = emu_call(emu, "kda_forward", t["query"], t["key"], t["value"], ss, st, t["sampling_locations"],
                             scale)
    assert_matches(o, ref.detach(), 1e-10, "kda output")
    grads, _ = emu_call(emu, "_kda_backward", go, t["query"], t["key"], t["value"], ss, st, t["sampling_locations"],
                        o, lse, scale)
    for name, a, b in zip(["query", "key", "value", "loc"], grads, ref_grads):
        assert_matches(a, b, 1e-9, f"kda grad_{name}")
    expect({"kda_forward": log}, "kda_forward", path, F64, dim)

    ref = ops.msda_reference(v, ss, st, loc, w)
    ref_grads = torch.autograd.grad(ref, [v, loc], go)
    m, _ = emu_call(emu, "msda_forward", t["value"], ss, st, t["sampling_locations"], w)
    assert_matches(m, ref.detach(), 1e-10, "msda output")
    grads, _ = emu_call(emu, "_msda_backward", go, t["value"], ss, st, t["sampling_locations"], w)
    for name, a, b in zip(["value", "loc"], grads, ref_grads):
        assert_matches(a, b, 1e-9, f"msda grad_{name}")


# ------------------------------------------------------------------ inconsistent level layouts
# spatial_shapes / level_start_index are not validated on the device (that would need a
# sync): every corner row is bounds-checked in the kernel instead. Nothing may crash or
# produce non-finite values; inputs sit in NaN moats, so a read just outside them would show.
CORRUPT_LAYOUTS = {
    "S_too_small": ([[6, 5], [3, 4]], [0, 30], 20),
    "start_past_end": ([[6, 5], [3, 4]], [0, 100], 42),
    "negative_start": ([[6, 5], [3, 4]], [-50, 30], 42),
    "huge_HW": ([[1 << 40, 1 << 40], [3, 4]], [0, 30], 42),
    "zero_negative_HW": ([[0, 5], [-3, 4]], [0, 30], 42),
    "int64_extremes": ([[-(1 << 62), 7], [3, -(1 << 62)]], [1 << 62, -(1 << 62)], 42),
    "S_zero": ([[6, 5], [3, 4]], [0, 30], 0),
}


@pytest.mark.parametrize("layout", CORRUPT_LAYOUTS)
def test_inconsistent_level_layout(emu, layout):
    shapes, starts, S = CORRUPT_LAYOUTS[layout]
    ss, st = torch.tensor(shapes), torch.tensor(starts)
    g = torch.Generator().manual_seed(0)
    for dtype, dim, key, mv in [(F32, 32, False, 4), (F16, 64, True, 1), (F64, 30, True, 4)]:
        opmath = F64 if dtype == F64 else F32
        B, Nq, M, L, P = 2, 5, 4, 2, 3
        q = moated(torch.randn(B, Nq, M, dim, generator=g).to(dtype))
        v = moated(torch.randn(B, S, mv, dim, generator=g).to(dtype))
        k = moated(torch.randn(B, S, mv, dim, generator=g).to(dtype)) if key else None
        loc = moated((torch.rand(B, Nq, M, L, P, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2).to(opmath), 0, 0.5)
        w = moated(torch.rand(B, Nq, M, L, P, generator=g, dtype=torch.float64).to(opmath))
        (o, lse), _ = emu_call(emu, "kda_forward", q, k, v, ss, st, loc, dim**-0.5)
        go = moated(torch.randn(o.shape, generator=g).to(dtype))
        kda_grads, _ = emu_call(emu, "_kda_backward", go, q, k, v, ss, st, loc, moated(o), moated(lse), dim**-0.5)
        m, _ = emu_call(emu, "msda_forward", v, ss, st, loc, w)
        msda_grads, _ = emu_call(emu, "_msda_backward", go, v, ss, st, loc, w)
        for name, t in zip(["out", "lse", "msda_out", "dq", "dk", "dv", "dloc", "m_dv", "m_dloc", "m_dw"],
                           [o, lse, m, *kda_grads, *msda_grads]):
            assert torch.isfinite(t.double()).all(), f"{dtype} D={dim}: non-finite {name}"


# ------------------------------------------------------------------ generator
def test_generator_fails_loudly():
    """gen.py refuses a kernel file its rewrites no longer fit, instead of emulating something else."""
    cu = gen.KERNEL.read_text()
    assert "lite_detr_emu" in gen.generate(cu)
    with pytest.raises(RuntimeError, match="'op registration'"):
        gen.generate(cu.replace("TORCH_LIBRARY_IMPL(lite_detr, CUDA, m)", "TORCH_LIBRARY_IMPL(lite_detr, CUDA, mod)"))
    with pytest.raises(RuntimeError, match="__syncthreads"):
        gen.generate(cu + "\n__device__ void f() { __syncthreads(); }\n")
