"""Fake kernels and autograd of the ``torch.ops.lite_detr`` ops, in one place.

Like torchvision's ``_meta_registrations.py`` and flash-attn's ``register_fake`` /
``register_autograd``: the fakes give ``torch.compile`` / ``torch.export`` the output
shapes without running a kernel, and the autograd formulas call the private backward ops
``_kda_backward`` / ``_msda_backward``. Registered when this module is imported, only if
the compiled library loaded (without it the ops do not exist and the reference runs).
"""
import torch

from . import _extension
from ._checks import opmath_dtype


def _check_devices(op: str, value: torch.Tensor, **tensors) -> None:
    """Fake kernels serve meta tensors too: refuse a mix of devices as the real kernels do."""
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device != value.device:
            raise RuntimeError(
                f"lite_detr.{op}: {name} must be on the same device as value ({value.device}), got {tensor.device}"
            )


# ---------------------------------------------------------------- fake kernels


def kda_forward_fake(query, key, value, spatial_shapes, level_start_index, sampling_locations, scale):
    """``(output [B, Nq, M*Dv], logsumexp [B, Nq, M] in the opmath dtype)``."""
    _check_devices(
        "kda_forward", value, query=query, key=key, spatial_shapes=spatial_shapes,
        level_start_index=level_start_index, sampling_locations=sampling_locations,
    )
    B, Nq, M, _ = query.shape
    output = value.new_empty((B, Nq, M * value.shape[-1]))
    logsumexp = value.new_empty((B, Nq, M), dtype=opmath_dtype(value.dtype))
    return output, logsumexp


def kda_backward_fake(
    grad_output, query, key, value, spatial_shapes, level_start_index, sampling_locations, output, logsumexp,
    scale,
):
    """``(grad_query, grad_key or [0], grad_value, grad_sampling_locations)``, contiguous."""
    _check_devices(
        "_kda_backward", value, grad_output=grad_output, query=query, key=key, spatial_shapes=spatial_shapes,
        level_start_index=level_start_index, sampling_locations=sampling_locations, output=output,
        logsumexp=logsumexp,
    )
    grad_key = key.new_empty(key.shape) if key is not None else value.new_empty((0,))
    return (
        query.new_empty(query.shape),
        grad_key,
        value.new_empty(value.shape),
        sampling_locations.new_empty(sampling_locations.shape),
    )


def msda_forward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """``output [B, Nq, M*Dv]``."""
    _check_devices(
        "msda_forward", value, spatial_shapes=spatial_shapes, level_start_index=level_start_index,
        sampling_locations=sampling_locations, attention_weights=attention_weights,
    )
    B, Nq, M = sampling_locations.shape[:3]
    return value.new_empty((B, Nq, M * value.shape[-1]))


def msda_backward_fake(grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """``(grad_value, grad_sampling_locations, grad_attention_weights)``, contiguous."""
    _check_devices(
        "_msda_backward", value, grad_output=grad_output, spatial_shapes=spatial_shapes,
        level_start_index=level_start_index, sampling_locations=sampling_locations,
        attention_weights=attention_weights,
    )
    return (
        value.new_empty(value.shape),
        sampling_locations.new_empty(sampling_locations.shape),
        attention_weights.new_empty(attention_weights.shape),
    )


# ---------------------------------------------------------------- autograd


def kda_setup_context(ctx, inputs, output):
    query, key, value, spatial_shapes, level_start_index, sampling_locations, scale = inputs
    out, logsumexp = output
    ctx.mark_non_differentiable(logsumexp)
    ctx.has_key = key is not None
    ctx.scale = scale
    ctx.save_for_backward(query, key, value, spatial_shapes, level_start_index, sampling_locations, out, logsumexp)


def kda_backward(ctx, grad_output, _grad_logsumexp):
    query, key, value, spatial_shapes, level_start_index, sampling_locations, out, logsumexp = ctx.saved_tensors
    grad_query, grad_key, grad_value, grad_locations = torch.ops.lite_detr._kda_backward(
        grad_output, query, key, value, spatial_shapes, level_start_index, sampling_locations, out, logsumexp,
        ctx.scale,
    )
    return grad_query, grad_key if ctx.has_key else None, grad_value, None, None, grad_locations, None


def msda_setup_context(ctx, inputs, output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = inputs
    ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)


def msda_backward(ctx, grad_output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
    grad_value, grad_locations, grad_weights = torch.ops.lite_detr._msda_backward(
        grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )
    return grad_value, None, None, grad_locations, grad_weights


if _extension.is_loaded():
    torch.library.register_fake("lite_detr::kda_forward", kda_forward_fake)
    torch.library.register_fake("lite_detr::_kda_backward", kda_backward_fake)
    torch.library.register_fake("lite_detr::msda_forward", msda_forward_fake)
    torch.library.register_fake("lite_detr::_msda_backward", msda_backward_fake)
    torch.library.register_autograd("lite_detr::kda_forward", kda_backward, setup_context=kda_setup_context)
    torch.library.register_autograd("lite_detr::msda_forward", msda_backward, setup_context=msda_setup_context)
