"""Deformable attention modules with detrex's signatures, on lite_detr's op.

``KeyAwareDeformableAttention`` (Lite DETR §3.6) and ``MultiScaleDeformableAttention``
(Deformable DETR, weights predicted from the query) are drop-ins for
``detrex.layers.MultiScaleDeformableAttention`` in encoder self-attention and
decoder cross-attention: same constructor keywords, same ``forward``
(``identity`` is the 4th positional argument, the residual is added inside),
same parameter names where they mean the same thing.

Value projection placement. The values are ``value_proj(x)`` split into M
heads. Sampling is linear and so is the projection, so head m's sample of
``W x + b`` equals ``W_m · sample(x) + b_m · w_in``, where ``w_in`` is the sum of
the bilinear weights that fall on valid (in-map, unpadded) pixels. So the
projection can be applied *after* sampling ("samples"): the op samples the raw
``[x, 1]`` (one value head shared by all query heads, the ones channel carrying
the bias and zeroed on padding), and each head's ``[W_m | b_m]`` is applied to its
weighted sum. For KDA the key side folds into the query:
``q_m · (W_m s + b_m w_in) = ([W_m | b_m]ᵀ q_m) · [s, w_in]``. Both placements give
the same result up to float rounding. "tokens" costs ``S·C²`` per layer, "samples"
costs in proportion to the queries; "auto" picks the cheaper for each call, by the
cost model of :mod:`lite_detr_plugin.layers.placement` (GEMM multiply-adds plus ``κ``
times the bilinear sample-channel reads, ``κ`` fitted to timings of both placements;
the FLOP tools make it choose by FLOPs, ``κ = 1``).

"output" is different: it is the released code's ``value_proj_after`` switch
(which crashes there). Each head aggregates its own D channels of the raw input
and ``value_proj`` is applied to the aggregated output. It is *not* the same
function as "tokens" (the projection no longer mixes channels across heads
before sampling); it is the cheapest layout, and the one the paper's encoder
GFLOPs count. Models must be trained with it; "auto" never picks it.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..registry import ATTENTION_REGISTRY
from ._detrex_compat import DetrexReinitCompatible
from .placement import VALUE_PLACEMENTS, check_choice, choose_placement


class _DeformableAttentionBase(DetrexReinitCompatible, nn.Module):
    """What KDA and MSDA share: offsets, value/output projections, locations, placement."""

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        img2col_step: int = 64,
        dropout: float = 0.1,
        batch_first: bool = False,
        value_placement: str = "auto",
    ):
        nn.Module.__init__(self)  # not super(): see DetrexReinitCompatible
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        for name, value in (("num_levels", num_levels), ("num_points", num_points), ("num_heads", num_heads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_choice("value_placement", value_placement, VALUE_PLACEMENTS)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.head_dim = embed_dim // num_heads
        self.im2col_step = img2col_step  # accepted for detrex compatibility; the op needs no batching
        self.batch_first = batch_first
        self.value_placement = value_placement
        self.dropout = nn.Dropout(dropout)
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)

    # -- initialisation (detrex's / Deformable DETR's) -------------------------

    def _init_sampling_offsets(self) -> None:
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.num_heads, 1, 1, 2)
        grid = grid.repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))

    @staticmethod
    def _init_xavier(linear: nn.Linear) -> None:
        nn.init.xavier_uniform_(linear.weight)
        nn.init.constant_(linear.bias, 0.0)

    # -- forward ---------------------------------------------------------------

    def forward(
        self,
        query: torch.Tensor,
        key: Optional[torch.Tensor] = None,
        value: Optional[torch.Tensor] = None,
        identity: Optional[torch.Tensor] = None,
        query_pos: Optional[torch.Tensor] = None,
        key_padding_mask: Optional[torch.Tensor] = None,
        reference_points: Optional[torch.Tensor] = None,
        spatial_shapes: Optional[torch.Tensor] = None,
        level_start_index: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> torch.Tensor:
        """detrex's attention call; returns ``identity + dropout(output_proj(attention))``.

        Args:
            query: ``[bs, Nq, C]`` (``[Nq, bs, C]`` unless batch_first).
            key: ignored, as in detrex: keys are sampled from ``value``.
            value: ``[bs, S, C]``, S = Σ H·W; defaults to ``query`` (before adding query_pos).
            identity: the residual, default ``query`` (before adding query_pos).
            query_pos: added to ``query`` for offsets, weights and KDA queries.
            key_padding_mask: ``[bs, S]`` bool, True at padded values.
            reference_points: ``[bs, Nq, L, 2]`` (x, y) or ``[bs, Nq, L, 4]`` boxes, in [0, 1].
            spatial_shapes: ``[L, 2]`` int64 (H, W), level 0 = highest resolution.
            level_start_index: ``[L]`` int64.
            **kwargs: absorbs ``valid_ratios``, ``attn_mask``, ``key_pos``, ... as detrex does.
        """
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.transpose(0, 1)
            value = value.transpose(0, 1)
        if spatial_shapes is None or level_start_index is None or reference_points is None:
            raise ValueError(
                f"{type(self).__name__}: spatial_shapes, level_start_index and reference_points are required"
            )
        if spatial_shapes.dim() != 2 or spatial_shapes.shape[0] != self.num_levels:
            raise ValueError(
                f"{type(self).__name__} was built for num_levels={self.num_levels} but spatial_shapes has "
                f"shape {list(spatial_shapes.shape)}"
            )
        bs, num_query, _ = query.shape
        offsets = self.sampling_offsets(query).view(
            bs, num_query, self.num_heads, self.num_levels, self.num_points, 2
        )
        locations = self._sampling_locations(reference_points, offsets, spatial_shapes, num_query)
        output = self._attend(query, value, key_padding_mask, locations, spatial_shapes, level_start_index)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.transpose(0, 1)
        return identity + self.dropout(output)

    def _sampling_locations(self, reference_points, offsets, spatial_shapes, num_query):
        if reference_points.dim() != 4 or reference_points.shape[1:3] != (num_query, self.num_levels):
            raise ValueError(
                f"{type(self).__name__}: reference_points must be [bs, Nq={num_query}, L={self.num_levels}, 2 or 4], "
                f"got shape {list(reference_points.shape)}"
            )
        # One fused addcmul rather than a broadcast divide and an add, its broadcast operands laid out as one
        # run of L·P·2 values per query: broadcasts over runs of 2 (or P·2) values are several times slower,
        # in eager (10.9 -> 1.8 ms at Nq = 22223, M = 8, L = P = 4) and in ONNX Runtime (22.6 -> 1.8 ms).
        bs, _, num_heads, num_levels, num_points, _ = offsets.shape
        dtype = torch.promote_types(offsets.dtype, reference_points.dtype)
        run = num_levels * num_points * 2

        def per_point(per_level):  # [bs, Nq, L, 2] -> [bs, Nq, 1, L*P*2]
            return per_level[:, :, :, None, :].expand(bs, num_query, num_levels, num_points, 2).reshape(
                bs, num_query, 1, run)

        flat_offsets = offsets.reshape(bs, num_query, num_heads, run)
        if reference_points.shape[-1] == 2:
            inverse = 1.0 / torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(dtype)  # [L, 2]
            scale = inverse[:, None, :].expand(num_levels, num_points, 2).reshape(run)
            locations = torch.addcmul(per_point(reference_points), flat_offsets, scale)
            return locations.view(bs, num_query, num_heads, num_levels, num_points, 2)
        if reference_points.shape[-1] == 4:
            half_size = reference_points[..., 2:].to(dtype) * (0.5 / num_points)
            locations = torch.addcmul(per_point(reference_points[..., :2]), flat_offsets, per_point(half_size))
            return locations.view(bs, num_query, num_heads, num_levels, num_points, 2)
        raise ValueError(
            f"{type(self).__name__}: the last dim of reference_points must be 2 or 4, got {reference_points.shape[-1]}"
        )

    # -- value projection placement --------------------------------------------

    def placement(self, num_query: int, num_value: int, device_type: str = "cpu", cost: Optional[str] = None) -> str:
        """Where this call applies the value projection: "tokens", "samples" or "output"
        (:func:`~lite_detr_plugin.layers.placement.choose_placement` with this module's sizes;
        ``cost`` "measured" or "flops", default the active cost model)."""
        return choose_placement(
            self.value_placement, self._cost_kind, num_query, num_value, self.embed_dim, self.num_heads,
            self.num_levels, self.num_points, separate_key=getattr(self, "key_proj", None) is not None,
            device_type=device_type, cost=cost,
        )

    def _head_weights(self, linear: nn.Linear) -> torch.Tensor:
        """``[W_m | b_m]`` per head: ``[M, D, C + 1]``."""
        M, D, C = self.num_heads, self.head_dim, self.embed_dim
        return torch.cat([linear.weight.view(M, D, C), linear.bias.view(M, D, 1)], dim=-1)

    @staticmethod
    def _augmented_input(value: torch.Tensor, key_padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``[x, 1]`` with padded tokens zeroed: ``[bs, S, 1, C + 1]``, one head shared by all."""
        augmented = torch.cat([value, value.new_ones(value.shape[:-1] + (1,))], dim=-1)
        if key_padding_mask is not None:
            augmented = augmented.masked_fill(key_padding_mask[..., None], 0.0)
        return augmented.unsqueeze(2).contiguous()

    def _project_tokens(self, linear: Optional[nn.Linear], value, key_padding_mask):
        """``linear(x)`` (``x`` itself for None) with padded tokens zeroed, split into heads: ``[bs, S, M, D]``."""
        projected = value if linear is None else linear(value)
        if key_padding_mask is not None:
            projected = projected.masked_fill(key_padding_mask[..., None], 0.0)
        bs, num_value, _ = value.shape
        return projected.view(bs, num_value, self.num_heads, self.head_dim)

    def _project_samples(self, sampled: torch.Tensor) -> torch.Tensor:
        """Applies each head's ``[W_m | b_m]`` to its weighted sum ``[bs, Nq, M*(C+1)]`` -> ``[bs, Nq, C]``."""
        bs, num_query, _ = sampled.shape
        sampled = sampled.view(bs, num_query, self.num_heads, self.embed_dim + 1)
        weights = self._head_weights(self.value_proj).to(sampled.dtype)
        return torch.einsum("bqmc,mdc->bqmd", sampled, weights).reshape(bs, num_query, self.embed_dim)

    def _attend(self, query, value, key_padding_mask, locations, spatial_shapes, level_start_index):
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, num_levels={self.num_levels}, "
            f"num_points={self.num_points}, batch_first={self.batch_first}, value_placement={self.value_placement!r}"
        )


@ATTENTION_REGISTRY.register(aliases=("msda",))
class MultiScaleDeformableAttention(_DeformableAttentionBase):
    """Deformable attention with weights predicted from the query, on lite_detr's op.

    A drop-in for ``detrex.layers.MultiScaleDeformableAttention`` with CPU,
    float16 and bfloat16 kernels; Lite's attention without KDA ("skipscale").
    Parameters: ``sampling_offsets``, ``attention_weights``, ``value_proj``,
    ``output_proj``, named and initialised as in detrex.
    """

    _cost_kind = "msda"

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        img2col_step: int = 64,
        dropout: float = 0.1,
        batch_first: bool = False,
        value_placement: str = "auto",
    ):
        super().__init__(embed_dim, num_heads, num_levels, num_points, img2col_step, dropout, batch_first, value_placement)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.init_weights()

    def init_weights(self) -> None:
        self._init_sampling_offsets()
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        self._init_xavier(self.value_proj)
        self._init_xavier(self.output_proj)

    def _attend(self, query, value, key_padding_mask, locations, spatial_shapes, level_start_index):
        bs, num_query, _ = query.shape
        M, L, P = self.num_heads, self.num_levels, self.num_points
        weights = self.attention_weights(query).view(bs, num_query, M, L * P)
        # float32 at least: half-precision weights would round every sample's share.
        weights = F.softmax(weights, -1, dtype=torch.promote_types(weights.dtype, torch.float32))
        weights = weights.view(bs, num_query, M, L, P)
        placement = self.placement(num_query, value.shape[1], query.device.type)
        if placement == "samples":
            augmented = self._augmented_input(value, key_padding_mask).to(self._compute_dtype(query))
            sampled = ops.msda(augmented, spatial_shapes, level_start_index, locations, weights)
            return self._project_samples(sampled)
        if placement == "output":
            raw = self._project_tokens(None, value, key_padding_mask).to(self._compute_dtype(query)).contiguous()
            return self.value_proj(ops.msda(raw, spatial_shapes, level_start_index, locations, weights))
        values = self._project_tokens(self.value_proj, value, key_padding_mask).contiguous()
        return ops.msda(values, spatial_shapes, level_start_index, locations, weights)

    def _compute_dtype(self, query: torch.Tensor) -> torch.dtype:
        """The dtype the value projection would produce here (autocast-aware)."""
        if torch.is_autocast_enabled(query.device.type):
            return torch.get_autocast_dtype(query.device.type)
        return query.dtype


@ATTENTION_REGISTRY.register(aliases=("kda",))
class KeyAwareDeformableAttention(_DeformableAttentionBase):
    """Key-aware deformable attention (Lite DETR §3.6, eq. 4).

    Keys and values are sampled at the same deformable locations and weighted
    by ``softmax(q·k/√d)`` over the L·P samples of a head. Keys are the values
    (``key ≡ value``, the released Lite-DETR default) unless ``use_key_proj`` adds
    a separate ``key_proj``. Parameters: ``sampling_offsets``, ``query_proj``,
    ``value_proj``, ``output_proj`` (and ``key_proj``), as in the released code,
    so its attention state dicts load as they are.
    """

    _cost_kind = "kda"

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        img2col_step: int = 64,
        dropout: float = 0.1,
        batch_first: bool = False,
        value_placement: str = "auto",
        use_key_proj: bool = False,
    ):
        super().__init__(embed_dim, num_heads, num_levels, num_points, img2col_step, dropout, batch_first, value_placement)
        self.query_proj = nn.Linear(embed_dim, embed_dim)
        self.key_proj = nn.Linear(embed_dim, embed_dim) if use_key_proj else None
        self.init_weights()

    def init_weights(self) -> None:
        self._init_sampling_offsets()
        for linear in (self.value_proj, self.query_proj, self.key_proj, self.output_proj):
            if linear is not None:
                self._init_xavier(linear)

    def _attend(self, query, value, key_padding_mask, locations, spatial_shapes, level_start_index):
        bs, num_query, _ = query.shape
        M, D = self.num_heads, self.head_dim
        queries = self.query_proj(query).view(bs, num_query, M, D)
        placement = self.placement(num_query, value.shape[1], query.device.type)
        if placement == "samples":
            key_linear = self.key_proj if self.key_proj is not None else self.value_proj
            folded = torch.einsum(
                "bqmd,mdc->bqmc", queries, self._head_weights(key_linear).to(queries.dtype)
            ).contiguous()
            augmented = self._augmented_input(value, key_padding_mask).to(folded.dtype)
            sampled = ops.kda(
                folded, None, augmented, spatial_shapes, level_start_index, locations, scale=D**-0.5
            )
            return self._project_samples(sampled)
        # "output" samples the raw input (value_proj comes after); "tokens" its projection.
        values = self._project_tokens(None if placement == "output" else self.value_proj, value, key_padding_mask)
        keys = None
        if self.key_proj is not None:
            keys = self._project_tokens(self.key_proj, value, key_padding_mask).to(queries.dtype).contiguous()
        output = ops.kda(
            queries.contiguous(), keys, values.to(queries.dtype).contiguous(), spatial_shapes,
            level_start_index, locations, scale=D**-0.5,
        )
        return self.value_proj(output) if placement == "output" else output
