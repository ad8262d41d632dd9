"""kda / msda over device x dtype (torchvision-style), against the float64 reference.

Half-precision inputs are rounded once; the reference then runs in float64 on
those rounded values, so the tolerance only covers the kernel's float32
accumulation and the rounding of its outputs.
"""
import pytest
import torch

from lite_detr_plugin import ops

from .helpers import (
    HALF_DTYPES,
    MSDA_GRAD_NAMES,
    assert_scaled_close,
    call_kda,
    call_kda_reference,
    call_msda,
    call_msda_reference,
    cpu_and_cuda,
    forward_backward,
    kda_grad_names,
    make_inputs,
    require_kernel,
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

# max error / max(1, max |reference|); measured errors are about 5x smaller.
REL_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}

KDA_SETTINGS = [
    pytest.param(dict(key=True, value_heads=4, key_dim=32, value_dim=16), id="key-Dk32-Dv16"),
    pytest.param(dict(key=False, value_heads=4, key_dim=32), id="shared"),
    pytest.param(dict(key=True, value_heads=1, key_dim=8, value_dim=40), id="key-Mv1-Dv40"),
]


def _inputs(device, dtype, loc_dtype=None, **overrides):
    params = dict(shapes=((6, 5), (3, 3)), heads=4, points=4, num_query=6, batch=2, pad=True, device=device,
                  dtype=dtype, loc_dtype=loc_dtype)
    params.update(overrides)
    return make_inputs(**params)


def _loc_dtype(dtype):
    """float32 locations / weights for half values (the accumulation dtype; the API must accept them)."""
    return torch.float32 if dtype in HALF_DTYPES else dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("device", cpu_and_cuda())
class TestDeviceDtype:
    @pytest.mark.parametrize("settings", KDA_SETTINGS)
    def test_kda(self, device, dtype, settings):
        require_kernel(device)
        x = _inputs(device, dtype, _loc_dtype(dtype), **settings)
        names = kda_grad_names(x)
        out, grads = forward_backward(call_kda(), x.tensors, names)
        ref_out, ref_grads = forward_backward(call_kda_reference(), x.tensors, names, leaf_dtype=torch.float64)
        assert out.dtype == dtype and out.device.type == device
        assert_scaled_close(out, ref_out, REL_TOL[dtype], "output")
        for name in names:
            leaf = x.tensors[name]
            assert grads[name].dtype == leaf.dtype and grads[name].device == leaf.device, name
            assert_scaled_close(grads[name], ref_grads[name], REL_TOL[dtype], name)

    def test_msda(self, device, dtype):
        require_kernel(device)
        x = _inputs(device, dtype, _loc_dtype(dtype), value_heads=1, key_dim=24)
        out, grads = forward_backward(call_msda, x.tensors, MSDA_GRAD_NAMES)
        ref_out, ref_grads = forward_backward(call_msda_reference, x.tensors, MSDA_GRAD_NAMES,
                                              leaf_dtype=torch.float64)
        assert out.dtype == dtype and out.device.type == device
        assert_scaled_close(out, ref_out, REL_TOL[dtype], "output")
        for name in MSDA_GRAD_NAMES:
            leaf = x.tensors[name]
            assert grads[name].dtype == leaf.dtype and grads[name].device == leaf.device, name
            assert_scaled_close(grads[name], ref_grads[name], REL_TOL[dtype], name)

    def test_locations_in_value_dtype(self, device, dtype):
        """Locations and weights in the value's own dtype (half included) are cast by the API."""
        require_kernel(device)
        x = _inputs(device, dtype, key=True)
        assert x.sampling_locations.dtype == dtype
        out, grads = forward_backward(call_kda(), x.tensors, ["sampling_locations"])
        assert out.dtype == dtype and grads["sampling_locations"].dtype == dtype
        assert torch.isfinite(grads["sampling_locations"]).all()
        ref = ops.kda_reference(*(t.double() if t is not None and t.is_floating_point() else t
                                  for t in x.kda_args()))
        assert_scaled_close(out, ref, REL_TOL[dtype], "kda output")
        out, grads = forward_backward(call_msda, x.tensors, ["attention_weights"])
        assert out.dtype == dtype and grads["attention_weights"].dtype == dtype
        ref = ops.msda_reference(*(t.double() if t.is_floating_point() else t for t in x.msda_args()))
        assert_scaled_close(out, ref, REL_TOL[dtype], "msda output")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("device", cpu_and_cuda())
def test_float64_locations_accepted(device, dtype):
    """The API casts locations / weights of any floating dtype to the accumulation dtype."""
    require_kernel(device)
    x = _inputs(device, dtype, torch.float64, key=True)
    expected = ops.kda(*(t.float() if t is not None and t.dtype == torch.float64 else t for t in x.kda_args()))
    torch.testing.assert_close(ops.kda(*x.kda_args()), expected, rtol=0, atol=0)
    assert ops.msda(*x.msda_args()).dtype == dtype


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_cuda_matches_cpu(dtype):
    """Same inputs on both devices: the CUDA kernels agree with the CPU kernels."""
    require_kernel("cuda")
    require_kernel("cpu")
    cpu = _inputs("cpu", dtype, _loc_dtype(dtype), key=True)
    cuda = _inputs("cuda", dtype, _loc_dtype(dtype), key=True)
    names = kda_grad_names(cpu)
    out_cpu, grads_cpu = forward_backward(call_kda(), cpu.tensors, names)
    out_cuda, grads_cuda = forward_backward(call_kda(), cuda.tensors, names)
    assert_scaled_close(out_cuda, out_cpu, 2 * REL_TOL[dtype], "kda output")
    for name in names:
        assert_scaled_close(grads_cuda[name], grads_cpu[name], 2 * REL_TOL[dtype], name)
    out_cpu, grads_cpu = forward_backward(call_msda, cpu.tensors, MSDA_GRAD_NAMES)
    out_cuda, grads_cuda = forward_backward(call_msda, cuda.tensors, MSDA_GRAD_NAMES)
    assert_scaled_close(out_cuda, out_cpu, 2 * REL_TOL[dtype], "msda output")
    for name in MSDA_GRAD_NAMES:
        assert_scaled_close(grads_cuda[name], grads_cpu[name], 2 * REL_TOL[dtype], name)
