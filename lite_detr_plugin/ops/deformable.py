"""Python API of the KDA / MSDA ops: checks, autograd and fake kernels.

The schemas and kernels live in ``csrc/`` (``torch.ops.lite_detr.*``); this
module registers their autograd formulas and fake (meta) kernels with
``torch.library`` so that ``torch.compile`` and ``torch.export`` see through
them, and falls back to the PyTorch reference when no kernel serves the device.
"""
from typing import Optional

import torch

from . import _extension
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


# ---------------------------------------------------------------- registration


def _check_devices(op: str, value: torch.Tensor, **tensors) -> None:
    """Fake kernels serve meta tensors too: refuse a mix of devices as the real kernels do."""
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device != value.device:
            raise RuntimeError(
                f"lite_detr.{op}: {name} must be on the same device as value ({value.device}), got {tensor.device}"
            )


def _register() -> None:
    lib = torch.ops.lite_detr

    @torch.library.register_fake("lite_detr::kda_forward")
    def _kda_forward_fake(query, key, value, spatial_shapes, level_start_index, sampling_locations, scale):
        _check_devices(
            "kda_forward", value, query=query, key=key, spatial_shapes=spatial_shapes,
            level_start_index=level_start_index, sampling_locations=sampling_locations,
        )
        B, Nq, M, _ = query.shape
        output = value.new_empty((B, Nq, M * value.shape[-1]))
        logsumexp = value.new_empty((B, Nq, M), dtype=opmath_dtype(value.dtype))
        return output, logsumexp

    @torch.library.register_fake("lite_detr::kda_backward")
    def _kda_backward_fake(
        grad_output, query, key, value, spatial_shapes, level_start_index, sampling_locations, output,
        logsumexp, scale,
    ):
        _check_devices(
            "kda_backward", value, grad_output=grad_output, query=query, key=key, spatial_shapes=spatial_shapes,
            level_start_index=level_start_index, sampling_locations=sampling_locations, output=output,
            logsumexp=logsumexp,
        )
        grad_key = torch.empty_like(key) if key is not None else value.new_empty((0,))
        return (
            torch.empty_like(query),
            grad_key,
            torch.empty_like(value),
            torch.empty_like(sampling_locations),
        )

    @torch.library.register_fake("lite_detr::msda_forward")
    def _msda_forward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        _check_devices(
            "msda_forward", value, spatial_shapes=spatial_shapes, level_start_index=level_start_index,
            sampling_locations=sampling_locations, attention_weights=attention_weights,
        )
        B, Nq, M = sampling_locations.shape[:3]
        return value.new_empty((B, Nq, M * value.shape[-1]))

    @torch.library.register_fake("lite_detr::msda_backward")
    def _msda_backward_fake(
        grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    ):
        _check_devices(
            "msda_backward", value, grad_output=grad_output, spatial_shapes=spatial_shapes,
            level_start_index=level_start_index, sampling_locations=sampling_locations,
            attention_weights=attention_weights,
        )
        return (
            torch.empty_like(value),
            torch.empty_like(sampling_locations),
            torch.empty_like(attention_weights),
        )

    def _kda_setup_context(ctx, inputs, output):
        query, key, value, spatial_shapes, level_start_index, sampling_locations, scale = inputs
        out, logsumexp = output
        ctx.mark_non_differentiable(logsumexp)
        ctx.has_key = key is not None
        ctx.scale = scale
        ctx.save_for_backward(
            query, key, value, spatial_shapes, level_start_index, sampling_locations, out, logsumexp
        )

    def _kda_backward(ctx, grad_output, _grad_logsumexp):
        query, key, value, spatial_shapes, level_start_index, sampling_locations, out, logsumexp = (
            ctx.saved_tensors
        )
        grad_query, grad_key, grad_value, grad_locations = lib.kda_backward(
            grad_output.contiguous(), query, key, value, spatial_shapes, level_start_index,
            sampling_locations, out, logsumexp, ctx.scale,
        )
        return (
            grad_query,
            grad_key if ctx.has_key else None,
            grad_value,
            None,
            None,
            grad_locations,
            None,
        )

    torch.library.register_autograd(
        "lite_detr::kda_forward", _kda_backward, setup_context=_kda_setup_context
    )

    def _msda_setup_context(ctx, inputs, output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = inputs
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)

    def _msda_backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = lib.msda_backward(
            grad_output.contiguous(), value, spatial_shapes, level_start_index, sampling_locations,
            attention_weights,
        )
        return grad_value, None, None, grad_locations, grad_weights

    torch.library.register_autograd(
        "lite_detr::msda_forward", _msda_backward, setup_context=_msda_setup_context
    )


if _extension.is_loaded():
    _register()
