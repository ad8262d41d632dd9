"""No device->host copy in an op call on CUDA tensors.

On the CPU this is shown with ``FakeCuda``: a tensor subclass whose ``device`` is cuda
while its data sits in a CPU tensor (every aten call unwraps, runs on the CPU and wraps
the result again, so the whole Python path of ``ops.kda`` / ``ops.msda`` and of the
attention modules runs as it would on a GPU, with real values). A ``TorchDispatchMode``
counts the calls that read tensor values on the host: ``aten._local_scalar_dense`` /
``aten.item`` (``.item()``, ``int(t)``, ``bool(t)``) and copies to the CPU; ``.tolist()`` is refused
for tensor subclasses, so it raises. The tests show both would be seen.

On a GPU (``cuda`` mark) the same calls run under ``torch.cuda.set_sync_debug_mode("error")``.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from lite_detr_plugin import KeyAwareDeformableAttention, MultiScaleDeformableAttention, ops
from lite_detr_plugin.ops import _checks, _extension

from .helpers import MSDA_GRAD_NAMES, call_kda, call_msda, kda_grad_names, make_inputs

aten = torch.ops.aten
HOST_READS = {aten._local_scalar_dense.default, aten.item.default}


class HostReadCounter(TorchDispatchMode):
    """Counts the aten calls that read tensor values on the host."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in HOST_READS:
            self.reads.append(str(func))
        elif func in (aten._to_copy.default, aten.to.device, aten.to.dtype_layout) and _to_cpu(args, kwargs):
            self.reads.append(str(func))
        elif func is aten.copy_.default and args[0].device.type == "cpu" and args[1].device.type != "cpu":
            self.reads.append(str(func))
        return func(*args, **kwargs)


def _to_cpu(args, kwargs):
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == "cpu" and args[0].device.type != "cpu"


class FakeCuda(torch.Tensor):
    """A CPU tensor that reports ``device="cuda"``; see the module docstring."""

    @staticmethod
    def __new__(cls, data: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls, data.shape, strides=data.stride(), dtype=data.dtype, device=torch.device("cuda"),
            requires_grad=False, storage_offset=data.storage_offset(),
        )

    def __init__(self, data: torch.Tensor):
        self.data_ = data

    def __repr__(self):
        return f"FakeCuda({self.data_!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        unwrap = lambda t: t.data_ if isinstance(t, FakeCuda) else t  # noqa: E731
        kwargs = {k: (torch.device("cpu") if k == "device" and v is not None else v) for k, v in (kwargs or {}).items()}
        out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
        if func in HOST_READS:
            return out
        return tree_map(lambda t: FakeCuda(t) if isinstance(t, torch.Tensor) else t, out)


def fake_cuda(tensors):
    return {k: FakeCuda(v) if isinstance(v, torch.Tensor) else v for k, v in tensors.items()}


@pytest.fixture
def compiled_cuda_path(monkeypatch):
    """The op wrappers take their compiled-CUDA branch (the kernels run on the CPU data)."""
    monkeypatch.setattr(_extension, "_KERNEL_DEVICES", _extension._KERNEL_DEVICES | {"cuda"})
    assert ops.has_kernel("cpu")


def _inputs():
    return make_inputs(batch=2, num_query=3, heads=2, shapes=((4, 3), (2, 2)), points=2, key=True, key_dim=6,
                       value_dim=5, pad=True)


@pytest.mark.parametrize("op", ["kda", "msda"])
def test_cuda_op_call_reads_no_tensor_values(op, compiled_cuda_path, monkeypatch):
    """Forward (the Python wrapper and its checks) and the private backward op, on CUDA tensors.

    (Autograd's engine needs a CUDA device guard, which a CPU build lacks: the backward op,
    the only thing the registered autograd formula calls, is called directly.)
    """
    x = _inputs()
    t = x.tensors
    call = call_kda() if op == "kda" else call_msda
    expected = call(t)

    # A read of these tensors cannot go unseen: with the CPU layout checks forced on, the call
    # fails at their .tolist() (refused for tensor subclasses); .item() / int() are counted
    # (test_encoder_forward_reads_at_most_one_value).
    with monkeypatch.context() as m:
        m.setattr(_checks, "reads_layout_values", lambda t: True)
        with pytest.raises(RuntimeError, match="tolist"):
            call(fake_cuda(t))

    lib = torch.ops.lite_detr
    names = KDA_NAMES if op == "kda" else MSDA_NAMES
    args = [t[n] for n in names]
    if op == "kda":
        out, lse = lib.kda_forward(*args, 0.5)
        backward = lambda a, o, lse_, go: lib._kda_backward(go, *a, o, lse_, 0.5)  # noqa: E731
    else:
        out, lse = lib.msda_forward(*args), None
        backward = lambda a, o, lse_, go: lib._msda_backward(go, *a)  # noqa: E731
    grad_output = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(2))
    expected_grads = backward(args, out, lse, grad_output)

    counter = HostReadCounter()
    with counter:
        got = call(fake_cuda(t))
        wrap = lambda v: None if v is None else FakeCuda(v)  # noqa: E731
        grads = backward([wrap(a) for a in args], wrap(out), wrap(lse), wrap(grad_output))
    assert counter.reads == [], f"{op} on CUDA tensors read values on the host: {counter.reads}"
    assert isinstance(got, FakeCuda) and got.device.type == "cuda"
    torch.testing.assert_close(got.data_, expected, rtol=0, atol=0)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a.data_, b, rtol=0, atol=0)


KDA_NAMES = ("query", "key", "value", "spatial_shapes", "level_start_index", "sampling_locations")
MSDA_NAMES = ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights")


@pytest.mark.cuda
@pytest.mark.parametrize("cls", [KeyAwareDeformableAttention, MultiScaleDeformableAttention])
@pytest.mark.parametrize("placement", ["tokens", "samples"])
def test_cuda_attention_module_does_not_sync(cls, placement):
    """The attention modules (FakeCuda cannot run them: indexing and linear layers need a
    CUDA device guard, which a CPU build lacks), forward and backward, on a GPU."""
    if not ops.has_kernel("cuda"):
        pytest.fail(f"the compiled op has no CUDA kernel ({ops.build_info()})")
    torch.manual_seed(0)
    module = cls(embed_dim=64, num_heads=2, num_levels=2, num_points=2, batch_first=True,
                 value_placement=placement).cuda()
    x = _inputs()
    S = x.value.shape[1]
    inputs = dict(
        query=torch.randn(2, 5, 64, device="cuda"), value=torch.randn(2, S, 64, device="cuda"),
        reference_points=torch.rand(2, 5, 2, 2, device="cuda"),
        spatial_shapes=x.spatial_shapes.cuda(), level_start_index=x.level_start_index.cuda(),
    )
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        module(**inputs).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert all(p.grad is not None for p in module.parameters())


@pytest.mark.cuda
@pytest.mark.parametrize("op", ["kda", "msda"])
def test_cuda_op_call_does_not_sync(op):
    if not ops.has_kernel("cuda"):
        pytest.fail(f"the compiled op has no CUDA kernel ({ops.build_info()})")
    x = make_inputs(batch=2, num_query=3, heads=2, shapes=((4, 3), (2, 2)), points=2, key=True, key_dim=32,
                    value_dim=32, dtype=torch.float32, device="cuda")
    call, names = (call_kda(), kda_grad_names(x)) if op == "kda" else (call_msda, MSDA_GRAD_NAMES)
    leaves = {k: (v.detach().clone().requires_grad_() if k in names else v) for k, v in x.tensors.items()}
    grad_out = None
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = call(leaves)
        grad_out = torch.ones_like(out)
        torch.autograd.backward(out, grad_out)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert out.is_cuda and all(leaves[n].grad is not None for n in names)


@pytest.mark.parametrize("attention", ["kda", "msda"])
@pytest.mark.parametrize("variant, mode, expected", [
    ("H3L1-(2+1)x1", "released", 1),  # the low/high split: LiteEncoder._num_low_tokens
    ("H2L2-(1+1)x1", "paper", 1),
    ("standard", "released", 0),
])
def test_encoder_forward_reads_at_most_one_value(attention, variant, mode, expected, monkeypatch):
    """A whole encoder forward with the op checks as they run on CUDA tensors (no layout reads):
    every host read of a tensor value is counted, aten-level (``.item()``, ``int()``, copies to
    the CPU) and ``.tolist()`` (which reads CPU memory without dispatching)."""
    from ..encoders.helpers import make_encoder, make_inputs as encoder_inputs

    kwargs = dict(attention=attention, low_query_mode=mode)
    if variant == "standard":
        kwargs["num_layers"] = 2
    encoder = make_encoder(variant, dtype=torch.float32, **kwargs)
    inputs = encoder_inputs(encoder.num_feature_levels, dtype=torch.float32)
    monkeypatch.setattr(_checks, "reads_layout_values", lambda t: False)
    tolists = []
    original_tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: tolists.append(tuple(self.shape)) or original_tolist(self))
    counter = HostReadCounter()
    with torch.no_grad(), counter:
        encoder(**inputs)
    assert len(counter.reads) + len(tolists) == expected, (counter.reads, tolists)
