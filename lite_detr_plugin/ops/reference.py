"""PyTorch reference of the KDA / MSDA ops, written from the equations.

Lite DETR, eq. (4): for query q of head m, with the L*P sampling locations
p + Δp of that head,

    K = Samp(S, p + Δp),  V = Samp(S, p + Δp)
    KDA(q, K, V) = softmax(q · Kᵀ · scale) V          (scale = 1/sqrt(d_k))

and multi-scale deformable attention, eq. (3), is the same sum with given
weights. ``Samp`` is ``F.grid_sample`` (bilinear, zero padding,
``align_corners=False``) of each level. Every sampled key and value is
materialised, so this is the slow, memory-hungry path: it is the test oracle
and the fallback when the compiled op is unavailable.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F


def _level_shapes(spatial_shapes: torch.Tensor, level_start_index: torch.Tensor) -> List[Tuple[int, int, int]]:
    shapes = spatial_shapes.tolist()
    starts = level_start_index.tolist()
    return [(int(h), int(w), int(s)) for (h, w), s in zip(shapes, starts)]


def sample_levels(
    feature: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
) -> torch.Tensor:
    """Bilinear samples of ``feature`` at every location.

    Args:
        feature: ``[B, S, Mv, D]``, Mv = 1 (shared by all heads) or M.
        sampling_locations: ``[B, Nq, M, L, P, 2]``, (x, y) in [0, 1].

    Returns:
        ``[B, Nq, M, L, P, D]``.
    """
    B, S, Mv, D = feature.shape
    _, Nq, M, L, P, _ = sampling_locations.shape
    # Non-finite or far-away locations sample zeros, as the kernels do: ±3 lies wholly outside
    # (a pixel beyond the border), and grid_sample would turn NaN/inf into NaN.
    grids = torch.nan_to_num(2 * sampling_locations - 1, nan=-3.0, posinf=3.0, neginf=-3.0).clamp(-3.0, 3.0)
    per_level = []
    for level, (H, W, start) in enumerate(_level_shapes(spatial_shapes, level_start_index)):
        # [B, H*W, Mv, D] -> [B*Mv, D, H, W]
        fmap = feature[:, start : start + H * W].permute(0, 2, 3, 1).reshape(B * Mv, D, H, W)
        grid = grids[:, :, :, level]  # [B, Nq, M, P, 2]
        if Mv == M:
            grid = grid.permute(0, 2, 1, 3, 4).reshape(B * M, Nq, P, 2)
            sampled = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            sampled = sampled.view(B, M, D, Nq, P).permute(0, 3, 1, 4, 2)  # [B, Nq, M, P, D]
        else:  # one value head shared by every query head
            grid = grid.reshape(B, Nq, M * P, 2)
            sampled = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            sampled = sampled.view(B, D, Nq, M, P).permute(0, 2, 3, 4, 1)  # [B, Nq, M, P, D]
        per_level.append(sampled)
    return torch.stack(per_level, dim=3)


def _upcast(*tensors):
    """Half-precision inputs are computed in float32, as the kernels accumulate."""
    return [t.float() if t is not None and t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors]


def kda_reference(
    query: torch.Tensor,
    key: Optional[torch.Tensor],
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    scale: Optional[float] = None,
) -> torch.Tensor:
    """Key-aware deformable attention; shapes as :func:`lite_detr_plugin.ops.kda`.

    Returns ``[B, Nq, M * Dv]`` in the dtype of ``value``.
    """
    dtype = value.dtype
    query, key, value, sampling_locations = _upcast(query, key, value, sampling_locations)
    sampling_locations = sampling_locations.to(value.dtype)
    B, Nq, M, Dk = query.shape
    if scale is None:
        scale = Dk**-0.5
    values = sample_levels(value, spatial_shapes, level_start_index, sampling_locations)
    keys = values if key is None else sample_levels(key, spatial_shapes, level_start_index, sampling_locations)
    keys = keys.flatten(3, 4)  # [B, Nq, M, L*P, Dk]
    values = values.flatten(3, 4)  # [B, Nq, M, L*P, Dv]
    logits = torch.einsum("bqmd,bqmkd->bqmk", query, keys) * scale
    attention = logits.softmax(dim=-1)
    out = torch.einsum("bqmk,bqmkd->bqmd", attention, values)
    return out.reshape(B, Nq, M * values.shape[-1]).to(dtype)  # explicit: Nq may be 0


def msda_reference(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention with given weights ``[B, Nq, M, L, P]``.

    Returns ``[B, Nq, M * Dv]`` in the dtype of ``value``.
    """
    dtype = value.dtype
    value, sampling_locations, attention_weights = _upcast(value, sampling_locations, attention_weights)
    sampling_locations = sampling_locations.to(value.dtype)
    attention_weights = attention_weights.to(value.dtype)
    B, Nq = sampling_locations.shape[:2]
    values = sample_levels(value, spatial_shapes, level_start_index, sampling_locations)
    out = torch.einsum("bqmlp,bqmlpd->bqmd", attention_weights, values)
    return out.reshape(B, Nq, -1 if Nq else out.shape[2] * out.shape[3]).to(dtype)  # Nq may be 0
