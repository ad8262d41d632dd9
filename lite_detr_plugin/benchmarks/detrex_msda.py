"""detrex's MSDA CUDA op built from a detrex source snapshot, for the "time / detrex" column.

A GPU machine without detrex installed (tools/gpu_check.sh) can still time
detrex's op: ``$LITE_DETR_DETREX_SRC`` (or ``--detrex-src``) names a detrex
checkout, whose ``detrex/layers/csrc/MsDeformAttn`` CUDA sources are compiled with
``torch.utils.cpp_extension.load`` together with a two-function binding written
here (nothing of detrex is copied into this package). The benchmark in
:mod:`lite_detr_plugin.benchmarks.kda` uses :func:`detrex_msda` when the variable
is set and detrex itself is not importable.
"""
import os
from typing import Callable, Optional

import torch

__all__ = ["ENV_VAR", "detrex_msda", "load_detrex_msda", "msda_sources", "snapshot_available"]

ENV_VAR = "LITE_DETR_DETREX_SRC"
IM2COL_STEP = 64  # what detrex's MultiScaleDeformableAttention passes

_BINDING = r"""
#include <torch/extension.h>
#include "MsDeformAttn/ms_deform_attn_cuda.h"
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &detrex::ms_deform_attn_cuda_forward, "detrex MSDA forward (CUDA)");
  m.def("backward", &detrex::ms_deform_attn_cuda_backward, "detrex MSDA backward (CUDA)");
}
"""


def msda_sources(detrex_src: str):
    """(csrc folder, CUDA source) of a detrex snapshot; ValueError naming ``detrex_src`` otherwise."""
    csrc = os.path.join(os.path.abspath(detrex_src), "detrex", "layers", "csrc")
    cuda = os.path.join(csrc, "MsDeformAttn", "ms_deform_attn_cuda.cu")
    if not os.path.isfile(cuda):
        raise ValueError(
            f"detrex_src={detrex_src!r} is not a detrex source tree: {cuda} is missing "
            "(pass the folder that holds detrex/layers/csrc)"
        )
    return csrc, cuda


def snapshot_available() -> bool:
    """Whether ``$LITE_DETR_DETREX_SRC`` names a detrex snapshot and a GPU is there to run it."""
    src = os.environ.get(ENV_VAR)
    if not src or not torch.cuda.is_available():
        return False
    try:
        msda_sources(src)
    except ValueError:
        return False
    return True


_MODULES = {}


def load_detrex_msda(detrex_src: Optional[str] = None, build_dir: Optional[str] = None, verbose: bool = False):
    """Compiles (once; cpp_extension caches the build) and loads detrex's MSDA CUDA op."""
    detrex_src = detrex_src or os.environ.get(ENV_VAR)
    if not detrex_src:
        raise ValueError(f"detrex_src is not given and ${ENV_VAR} is not set")
    csrc, cuda = msda_sources(detrex_src)
    if detrex_src in _MODULES:
        return _MODULES[detrex_src]
    from torch.utils.cpp_extension import load

    build_dir = build_dir or os.path.join(
        os.environ.get("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/torch_extensions")), "detrex_msda_bench"
    )
    os.makedirs(build_dir, exist_ok=True)
    binding = os.path.join(build_dir, "binding.cpp")
    if not os.path.isfile(binding) or open(binding).read() != _BINDING:
        with open(binding, "w") as f:
            f.write(_BINDING)
    module = load(
        name="detrex_msda_bench", sources=[binding, cuda], extra_include_paths=[csrc],
        extra_cuda_cflags=["-O3"], build_directory=build_dir, verbose=verbose,
    )
    _MODULES[detrex_src] = module
    return module


class _DetrexMSDAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, module, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        ctx.module = module
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return module.forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                              IM2COL_STEP)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        value, shapes, starts, locations, weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = ctx.module.backward(
            value, shapes, starts, locations, weights, grad_output.contiguous(), IM2COL_STEP
        )
        return None, grad_value, None, None, grad_locations, grad_weights


def detrex_msda(detrex_src: Optional[str] = None) -> Callable:
    """``fn(value [B,S,M,D], spatial_shapes, level_start_index, sampling_locations, attention_weights)``
    -> ``[B, Nq, M*D]``: detrex's CUDA op (float32/float64 on CUDA) with its autograd."""
    module = load_detrex_msda(detrex_src)

    def fn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        return _DetrexMSDAFunction.apply(module, value, spatial_shapes, level_start_index,
                                         sampling_locations, attention_weights)

    return fn
