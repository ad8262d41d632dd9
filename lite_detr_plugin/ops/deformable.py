"""Python API of the KDA / MSDA ops: argument checks, then the compiled op or the reference.

The schemas and kernels live in ``csrc/`` (``torch.ops.lite_detr.*``); their autograd
formulas and fake kernels are registered in :mod:`._registrations`, so that
``torch.compile`` and ``torch.export`` see through them. Inputs may have any strides
(the op makes them contiguous). On CUDA tensors nothing here reads a tensor value
(no device->host sync); see :func:`._checks.reads_layout_values`.
"""
from typing import Optional

import torch

from . import _extension, _registrations  # noqa: F401  (registers autograd and fakes)
from ._checks import check_kda_args, check_msda_args, opmath_dtype
from .reference import kda_reference, msda_reference

__all__ = ["kda", "msda"]


def kda(
    query: torch.Tensor,
    key: Optional[torch.Tensor],
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    scale: Optional[float] = None,
) -> torch.Tensor:
    """Key-aware deformable attention (Lite DETR, eq. 4).

    Each query head samples its key and value at the same L*P locations
    (bilinear, zeros outside the map, ``grid_sample(align_corners=False)``
    convention) and weights the values by ``softmax(q·k * scale)`` over the L*P
    samples.

    Args:
        query: ``[B, Nq, M, Dk]``.
        key: ``[B, S, Mv, Dk]``, or None to use ``value`` as the key (the released
            Lite-DETR default).
        value: ``[B, S, Mv, Dv]``; Mv = M, or 1 for one value head shared by all
            query heads.
        spatial_shapes: ``[L, 2]`` int64 (H, W) per level, level 0 first.
        level_start_index: ``[L]`` int64, the first token of each level.
        sampling_locations: ``[B, Nq, M, L, P, 2]``, (x, y) in [0, 1]; points
            outside sample zeros.
        scale: logit scale, default ``1/sqrt(Dk)``.

    Returns:
        ``[B, Nq, M * Dv]`` in the dtype of ``value``; accumulation is float32
        for half-precision inputs.
    """
    sizes = check_kda_args(query, key, value, spatial_shapes, level_start_index, sampling_locations)
    if scale is None:
        scale = sizes["Dk"] ** -0.5
    sampling_locations = sampling_locations.to(opmath_dtype(value.dtype))
    if _extension.use_compiled(value.device):
        output, _ = torch.ops.lite_detr.kda_forward(
            query, key, value, spatial_shapes, level_start_index, sampling_locations, float(scale)
        )
        return output
    return kda_reference(query, key, value, spatial_shapes, level_start_index, sampling_locations, scale)


def msda(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention with given weights (Deformable DETR, Lite DETR eq. 3).

    The same sampling as :func:`kda`, weighted by ``attention_weights``
    ``[B, Nq, M, L, P]`` instead of ``softmax(q·k)``. Serves Lite's mode
    without KDA ("skipscale") and plain deformable attention, on CPU too.

    Returns:
        ``[B, Nq, M * Dv]`` in the dtype of ``value``.
    """
    check_msda_args(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    acc = opmath_dtype(value.dtype)
    sampling_locations = sampling_locations.to(acc)
    attention_weights = attention_weights.to(acc)
    if _extension.use_compiled(value.device):
        return torch.ops.lite_detr.msda_forward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights
        )
    return msda_reference(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
