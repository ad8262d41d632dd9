"""Plain-PyTorch oracles of the encoders, written from their published semantics.

They share the *weights* of a :class:`LiteEncoder` (read through its submodules'
parameters) but none of its code: sampling is ``F.grid_sample`` per level, the
attention is written out from the equations, and each encoder loop follows its
source:

* :func:`released_encoder` — the public Lite-DETR ``TransformerEncoder.forward``
  with ``DeformableTransformerEncoderLayer`` and ``MSDeformAttn(key_aware=True)``
  (IDEA-Research/Lite-DETR, ``models/dino/deformable_transformer.py`` and
  ``ops/functions/ms_deform_attn_func.py::ms_deform_attn_core_pytorch_key_aware``):
  the reference points are recomputed from ``valid_ratios``; per layer ``i``, if
  ``(i + 1) % (num_layers / num_expansion) == 0`` every token queries and the
  layer's FFN is split (``small_expand``: light FFN for the low rows, full for
  the high rows); otherwise the high tokens query (``tgt + pos_tgt``) the full,
  partly stale ``src`` and ``src = cat(src[low], tgt)``.
* :func:`paper_encoder` — Lite DETR eq. (1) and (2): ``A`` times
  ``F_H' = KDA(Q=F_H, K=V=Concat(F_H, F_L))``, then
  ``F_L' = KDA(Q=F_L, K=V=Concat(F_H', F_L))`` with the light FFN, ``B`` times.
* :func:`standard_encoder` — detrex's ``DINOTransformerEncoder`` loop
  (``BaseTransformerLayer(self_attn, norm, ffn, norm)``, residuals inside the
  attention and the FFN).

Every encoder layer is post-norm: ``x = norm1(q + attn(q + pos, value))``, then
``norm(x + ffn(x))``. Dropout is ignored: call the encoder in eval mode.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F


def _linear(module, x):
    return F.linear(x, module.weight, module.bias)


def _layer_norm(norm, x):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _ffn(ffn, norm, x):
    hidden = F.relu(_linear(ffn.fc1, x))
    return _layer_norm(norm, x + _linear(ffn.fc2, hidden))


def bilinear_samples(maps: torch.Tensor, shapes, locations: torch.Tensor) -> torch.Tensor:
    """Samples ``maps [bs, S, M, D]`` (levels flattened row-major, level 0 first) at
    ``locations [bs, Nq, M, L, P, 2]`` in [0, 1] (x, y); zeros outside the map.

    Returns ``[bs, Nq, M, L, P, D]``.
    """
    bs, _, M, D = maps.shape
    _, Nq, _, L, P, _ = locations.shape
    start = 0
    out = []
    for level, (h, w) in enumerate(shapes):
        fmap = maps[:, start:start + h * w]  # [bs, h*w, M, D]
        start += h * w
        fmap = fmap.permute(0, 2, 3, 1).reshape(bs * M, D, h, w)
        grid = locations[:, :, :, level].permute(0, 2, 1, 3, 4).reshape(bs * M, Nq, P, 2) * 2 - 1
        sampled = F.grid_sample(fmap, grid.to(fmap.dtype), mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # [bs*M, D, Nq, P]
        out.append(sampled.view(bs, M, D, Nq, P).permute(0, 3, 1, 4, 2))
    return torch.stack(out, dim=3)


def deformable_attention(attn, query: torch.Tensor, value: torch.Tensor, reference_points: torch.Tensor,
                         shapes, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """One deformable attention (no residual): ``query`` already holds the position embedding.

    KDA (the module has ``query_proj``): keys and values are sampled at the same
    locations, ``softmax(q·k / sqrt(d))`` over a head's L·P samples; the key is
    the value (released ``proj_key=False``) unless the module has ``key_proj``.
    MSDA (the module has ``attention_weights``): ``softmax(attention_weights(q))``.
    Values (and keys) are projected on the tokens and zeroed at padding.
    """
    bs, Nq, C = query.shape
    S = value.shape[1]
    M, L, P = attn.num_heads, attn.num_levels, attn.num_points
    D = C // M
    values = _linear(attn.value_proj, value)
    if padding_mask is not None:
        values = values.masked_fill(padding_mask[..., None], 0.0)
    offsets = _linear(attn.sampling_offsets, query).view(bs, Nq, M, L, P, 2)
    wh = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
    if reference_points.shape[-1] == 2:
        reference_points = reference_points.to(query.dtype)
        locations = reference_points[:, :, None, :, None, :] + offsets / wh[None, None, None, :, None, :]
    else:
        reference_points = reference_points.to(query.dtype)
        locations = (reference_points[:, :, None, :, None, :2]
                     + offsets / P * reference_points[:, :, None, :, None, 2:] * 0.5)
    sampled_values = bilinear_samples(values.view(bs, S, M, D), shapes, locations).flatten(3, 4)
    if getattr(attn, "query_proj", None) is not None:  # KDA
        if getattr(attn, "key_proj", None) is not None:
            keys = _linear(attn.key_proj, value)
            if padding_mask is not None:
                keys = keys.masked_fill(padding_mask[..., None], 0.0)
            sampled_keys = bilinear_samples(keys.view(bs, S, M, D), shapes, locations).flatten(3, 4)
        else:
            sampled_keys = sampled_values
        queries = _linear(attn.query_proj, query).view(bs, Nq, M, 1, D)
        logits = (queries * sampled_keys).sum(-1) / math.sqrt(D)  # [bs, Nq, M, L*P]
        weights = logits.softmax(-1)
    else:
        weights = _linear(attn.attention_weights, query).view(bs, Nq, M, L * P).softmax(-1)
    out = (weights[..., None] * sampled_values).sum(3).reshape(bs, Nq, C)
    return _linear(attn.output_proj, out)


def _attend(layer, tgt, pos, src, reference_points, shapes, mask):
    """``norm1(tgt + attn(tgt + pos, src))``, the attention half of a post-norm layer."""
    return _layer_norm(layer.norm1, tgt + deformable_attention(
        layer.self_attn, tgt + pos, src, reference_points, shapes, mask))


def reference_points_from_ratios(shapes, valid_ratios: torch.Tensor) -> torch.Tensor:
    """The encoder's reference points, from Deformable DETR's definition: the centre
    of pixel (i, j) of level l is ((j + .5) / (r_w,l W_l), (i + .5) / (r_h,l H_l)) in
    the valid region, re-projected into every level k by (r_w,k, r_h,k).

    Computed in the dtype of ``valid_ratios`` (float32 in detrex and Lite-DETR) with
    their order of operations, so that the rounding matches theirs.
    """
    rows = []
    dtype = valid_ratios.dtype
    for level, (h, w) in enumerate(shapes):
        ys = (torch.arange(h, dtype=dtype) + 0.5).repeat_interleave(w)
        xs = (torch.arange(w, dtype=dtype) + 0.5).repeat(h)
        ratios = valid_ratios[:, level]  # [bs, 2] (w, h)
        rows.append(torch.stack([xs[None] / (ratios[:, None, 0] * w), ys[None] / (ratios[:, None, 1] * h)], -1))
    points = torch.cat(rows, 1)  # [bs, N, 2]
    return points[:, :, None] * valid_ratios[:, None]


def _shapes(spatial_shapes):
    return [tuple(int(v) for v in s) for s in spatial_shapes.tolist()]


def released_encoder(encoder, query, query_pos, padding_mask, spatial_shapes, valid_ratios,
                     num_high_levels: int, num_expansion: int) -> torch.Tensor:
    """Lite-DETR's released ``TransformerEncoder.forward`` (the ``src`` it returns)."""
    shapes = _shapes(spatial_shapes)
    num_levels = len(shapes)
    reference_points = reference_points_from_ratios(shapes, valid_ratios).to(query.dtype)
    split = sum(h * w for h, w in shapes[: num_levels - num_high_levels])  # level_start_index[L - enc_scale]
    layers = list(encoder.layers)
    num_layers = len(layers)
    src, pos = query, query_pos
    tgt = src[:, split:]
    reference_points_tgt, pos_tgt = reference_points[:, split:], pos[:, split:]
    for layer_id, layer in enumerate(layers):
        if (layer_id + 1) % (num_layers / num_expansion) == 0:
            # encoder_layer_last, small_expand=True: all tokens query, the FFN is split by rows
            x = _attend(layer, src, pos, src, reference_points, shapes, padding_mask)
            low = _ffn(layer.light_ffn, layer.light_norm, x[:, :split])
            high = _ffn(layer.ffn, layer.norm2, x[:, split:])
            output = torch.cat([low, high], 1)
            tgt = output[:, split:]
            src = output
        else:
            x = _attend(layer, tgt, pos_tgt, src, reference_points_tgt, shapes, padding_mask)
            tgt = _ffn(layer.ffn, layer.norm2, x)
            src = torch.cat([src[:, :split], tgt], 1)
    if encoder.post_norm_layer is not None:
        src = _layer_norm(encoder.post_norm_layer, src)
    return src


def paper_encoder(encoder, query, query_pos, padding_mask, spatial_shapes, reference_points,
                  num_high_levels: int, num_high_updates: int, num_blocks: int) -> torch.Tensor:
    """Lite DETR eq. (1) and (2), B blocks of A high-level updates and one low-level update."""
    shapes = _shapes(spatial_shapes)
    split = sum(h * w for h, w in shapes[: len(shapes) - num_high_levels])
    f_low, f_high = query[:, :split], query[:, split:]
    pos_low, pos_high = query_pos[:, :split], query_pos[:, split:]
    ref_low, ref_high = reference_points[:, :split], reference_points[:, split:]
    layers = iter(encoder.layers)
    for _ in range(num_blocks):
        for _ in range(num_high_updates):  # eq. (1): Q = F_H, K = V = Concat(F_H, F_L)
            layer = next(layers)
            x = _attend(layer, f_high, pos_high, torch.cat([f_low, f_high], 1), ref_high, shapes, padding_mask)
            f_high = _ffn(layer.ffn, layer.norm2, x)
        layer = next(layers)  # eq. (2): Q = F_L, K = V = Concat(F_H', F_L), light FFN
        x = _attend(layer, f_low, pos_low, torch.cat([f_low, f_high], 1), ref_low, shapes, padding_mask)
        f_low = _ffn(layer.light_ffn, layer.light_norm, x)
    assert next(layers, None) is None, "the encoder has more layers than (A+1)*B"
    out = torch.cat([f_low, f_high], 1)
    if encoder.post_norm_layer is not None:
        out = _layer_norm(encoder.post_norm_layer, out)
    return out


def standard_layer(attn, norm1, fc1, fc2, norm2, query, query_pos, reference_points, shapes, padding_mask):
    """detrex ``BaseTransformerLayer(("self_attn", "norm", "ffn", "norm"))`` with deformable self-attention."""
    x = _layer_norm(norm1, query + deformable_attention(attn, query + query_pos, query, reference_points, shapes,
                                                        padding_mask))
    return _layer_norm(norm2, x + _linear(fc2, F.relu(_linear(fc1, x))))


def standard_encoder(encoder, query, query_pos, padding_mask, spatial_shapes, reference_points) -> torch.Tensor:
    """detrex's ``DINOTransformerEncoder.forward`` with a LiteEncoder's (standard) weights."""
    shapes = _shapes(spatial_shapes)
    for layer in encoder.layers:
        query = standard_layer(layer.self_attn, layer.norm1, layer.ffn.fc1, layer.ffn.fc2, layer.norm2,
                               query, query_pos, reference_points, shapes, padding_mask)
    if encoder.post_norm_layer is not None:
        query = _layer_norm(encoder.post_norm_layer, query)
    return query
