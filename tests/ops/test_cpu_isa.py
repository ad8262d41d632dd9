"""Every CPU kernel build (baseline, AVX2+FMA, AVX-512) against the reference.

The extension compiles its CPU kernels once per instruction set and picks the
widest the processor runs; ``LITE_DETR_CPU_ISA`` asks for a narrower one. The
choice is made once per process, so each build is exercised in a subprocess
that writes its outputs and gradients to a file; the comparison with the
reference happens here.
"""
import os
import subprocess
import sys

import pytest
import torch

from lite_detr_plugin import ops
from tests.ops.helpers import (
    MSDA_GRAD_NAMES,
    call_kda,
    call_kda_reference,
    call_msda,
    call_msda_reference,
    forward_backward,
    kda_grad_names,
    make_inputs,
)

ISAS = ("base", "avx2", "avx512")
# Hit the D=32 and D=64 fast paths, the generic path, a separate key and a shared value head.
CASES = {
    "d32": dict(batch=2, num_query=9, heads=3, key_dim=32, shapes=((6, 5), (3, 4)), points=3),
    "d64-key": dict(batch=1, num_query=7, heads=2, key_dim=64, shapes=((5, 7), (2, 3)), points=2, key=True),
    "d30-pad": dict(batch=2, num_query=6, heads=4, key_dim=30, shapes=((4, 4), (2, 2), (1, 1)), points=4, pad=True),
    "mv1-d257": dict(batch=1, num_query=5, heads=4, value_heads=1, key_dim=257, shapes=((4, 3), (2, 2)), points=2),
    "dk16-dv24": dict(batch=1, num_query=4, heads=2, key_dim=16, value_dim=24, shapes=((3, 5),), points=5, key=True),
}
DTYPES = {"float64": torch.float64, "float32": torch.float32}

_WORKER = r"""
import json, sys, torch
sys.path.insert(0, {root!r})
from lite_detr_plugin import ops
from tests.ops.helpers import (MSDA_GRAD_NAMES, call_kda, call_msda, forward_backward, kda_grad_names, make_inputs)
from tests.ops.test_cpu_isa import CASES, DTYPES
assert ops.cpu_capability() == {isa!r}, ops.cpu_capability()
results = {{}}
for name, case in CASES.items():
    for dtype_name, dtype in DTYPES.items():
        inputs = make_inputs(dtype=dtype, seed=3, **case)
        out, grads = forward_backward(call_kda(), inputs.tensors, kda_grad_names(inputs))
        results[f"kda/{{name}}/{{dtype_name}}"] = dict(out=out, **grads)
        out, grads = forward_backward(call_msda, inputs.tensors, MSDA_GRAD_NAMES)
        results[f"msda/{{name}}/{{dtype_name}}"] = dict(out=out, **grads)
torch.save(results, {path!r})
"""


def _supported_isas():
    probe = subprocess.run(
        [sys.executable, "-c", "from lite_detr_plugin import ops; print(ops.cpu_capability())"],
        capture_output=True, text=True, check=True,
    )
    best = probe.stdout.strip()
    return ISAS[: ISAS.index(best) + 1] if best in ISAS else ()


@pytest.fixture(scope="module")
def isa_results(tmp_path_factory):
    if not ops.has_kernel("cpu"):
        pytest.fail(f"the compiled op is not loaded: {ops.build_info()}")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    results = {}
    for isa in _supported_isas():
        path = str(tmp_path_factory.mktemp(isa) / "results.pt")
        env = dict(os.environ, LITE_DETR_CPU_ISA=isa)
        proc = subprocess.run(
            [sys.executable, "-c", _WORKER.format(root=root, isa=isa, path=path)],
            capture_output=True, text=True, env=env, cwd=root,
        )
        assert proc.returncode == 0, f"{isa} worker failed:\n{proc.stderr[-3000:]}"
        results[isa] = torch.load(path)
    return results


def _reference(op, case, dtype):
    inputs = make_inputs(dtype=dtype, seed=3, **CASES[case])
    if op == "kda":
        return forward_backward(call_kda_reference(), inputs.tensors, kda_grad_names(inputs), leaf_dtype=torch.float64)
    return forward_backward(call_msda_reference, inputs.tensors, MSDA_GRAD_NAMES, leaf_dtype=torch.float64)


def test_all_isas_of_this_processor_ran(isa_results):
    assert "base" in isa_results  # every x86-64 processor runs the baseline build
    assert set(isa_results) == set(_supported_isas())


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("op", ["kda", "msda"])
def test_every_cpu_build_matches_reference(isa_results, op, case, dtype_name):
    ref_out, ref_grads = _reference(op, case, DTYPES[dtype_name])
    tolerance = 1e-9 if dtype_name == "float64" else 2e-4
    for isa, results in isa_results.items():
        got = results[f"{op}/{case}/{dtype_name}"]
        for name, expected in dict(out=ref_out, **ref_grads).items():
            actual = got[name].double()
            scale = max(1.0, expected.abs().max().item())
            error = (actual - expected.double()).abs().max().item()
            assert error <= tolerance * scale, f"{isa} {op} {case} {dtype_name} {name}: error {error:.3g}"


def test_unknown_isa_request_is_refused():
    proc = subprocess.run(
        [sys.executable, "-c", "from lite_detr_plugin import ops; ops.cpu_capability()"],
        capture_output=True, text=True, env=dict(os.environ, LITE_DETR_CPU_ISA="sse9"),
    )
    assert proc.returncode != 0
    assert "LITE_DETR_CPU_ISA must be base, avx2 or avx512" in proc.stderr
