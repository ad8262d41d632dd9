"""Lite DETR's interleaved multi-scale encoder, a drop-in for detrex's deformable encoders.

Tokens arrive flattened level by level, level 0 = highest resolution. The H
lowest-resolution levels (the last H) are the high-level tokens, the others the
low-level tokens. Each of the B blocks runs A high-level layers (queries: the
high-level tokens; values: all tokens, the low-level ones stale) and one
low-level layer, whose low-level rows use a light FFN (hidden size
``feedforward_dim / λ``). Two low-level layer semantics:

* ``"released"`` (the public Lite-DETR code, for its checkpoints): every token
  is a query; high-level rows go through the full FFN, low-level rows through the
  light one.
* ``"paper"`` (Lite DETR eq. 2): only the low-level tokens are queries, with the
  light FFN; the high-level tokens pass through.

``variant="standard"`` builds ``num_layers`` ordinary layers that update every
token, i.e. detrex's deformable encoder (with ``attention="msda"``).
"""
from typing import List, Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers.deformable_attention import VALUE_PLACEMENTS  # also registers "kda" and "msda"
from ..layers.factory import build_attention
from ..layers.ffn import FFN
from ..registry import ATTENTION_REGISTRY, ENCODER_REGISTRY, UnknownComponentError
from .arguments import check_encoder_arguments
from .variants import STANDARD, LiteVariant, parse_variant, variant_for_levels

LOW_QUERY_MODES = ("released", "paper")


class LiteEncoderLayer(nn.Module):
    """Deformable self-attention, norm, FFN, norm (detrex's post-norm order).

    Args:
        attention: the attention module (residual inside).
        ffn: the full FFN, or None for a low-level layer in the "paper" mode.
        light_ffn: the light FFN of the low-level rows, or None.

    When both FFNs exist, the first ``num_light_rows`` query rows (the
    low-level tokens) take the light FFN and the rest the full one.
    """

    def __init__(self, attention: nn.Module, embed_dim: int, ffn: Optional[FFN], light_ffn: Optional[FFN]):
        super().__init__()
        self.self_attn = attention
        self.norm1 = nn.LayerNorm(embed_dim)
        self.ffn = ffn
        self.norm2 = nn.LayerNorm(embed_dim) if ffn is not None else None
        self.light_ffn = light_ffn
        self.light_norm = nn.LayerNorm(embed_dim) if light_ffn is not None else None

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        query_pos: Optional[torch.Tensor],
        reference_points: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor],
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        num_light_rows: int = 0,
    ) -> torch.Tensor:
        """``query [bs, Nq, C]`` attends to ``value [bs, S, C]``; returns ``[bs, Nq, C]``."""
        x = self.self_attn(
            query,
            value=value,
            query_pos=query_pos,
            key_padding_mask=key_padding_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
        )
        x = self.norm1(x)
        if self.light_ffn is None:
            return self.norm2(self.ffn(x))
        if self.ffn is None:
            return self.light_norm(self.light_ffn(x))
        light = self.light_norm(self.light_ffn(x[:, :num_light_rows]))
        full = self.norm2(self.ffn(x[:, num_light_rows:]))
        return torch.cat([light, full], dim=1)


@ENCODER_REGISTRY.register()
class LiteEncoder(nn.Module):
    """Lite DETR's interleaved encoder with detrex's encoder interface.

    Constructor keywords of detrex's DINO / H-DETR / Deformable DETR encoders:
        embed_dim, num_heads, feedforward_dim, attn_dropout, ffn_dropout,
        num_layers, post_norm, num_feature_levels, use_checkpoint.

    Lite keywords:
        variant: ``"H3L1-(2+1)x3"``-style shorthand (sets the three below), or
            ``"standard"`` for ``num_layers`` all-token layers.
        num_high_levels: H, the lowest-resolution levels that are high-level.
        num_high_updates: A, high-level layers per block.
        num_blocks: B.
        attention: ``"kda"`` (key-aware), ``"msda"`` (weights from the query), or the
            name of any attention in ``ATTENTION_REGISTRY`` (see
            :func:`~lite_detr_plugin.layers.factory.build_attention` for what it must take).
        low_ffn_ratio: λ; the light FFN has ``feedforward_dim // λ`` hidden units.
        low_query_mode: ``"released"`` or ``"paper"`` (see the module docstring).
        value_placement: ``"tokens"``, ``"samples"`` or ``"auto"``: where the value
            projection is applied (same result; "auto" takes the cheaper); or
            ``"output"``, the released code's ``value_proj_after``: the projection
            after aggregation, a different and cheaper model (the paper's GFLOPs).
        num_points: P, sampling points per head and level.
        use_key_proj: KDA with a separate key projection (default: key ≡ value).

    ``num_layers`` is derived for Lite variants ((A+1)·B); if given, it must agree.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        feedforward_dim: int = 1024,
        attn_dropout: float = 0.1,
        ffn_dropout: float = 0.1,
        num_layers: Optional[int] = None,
        post_norm: bool = False,
        num_feature_levels: int = 4,
        use_checkpoint: bool = False,
        *,
        variant: Optional[str] = None,
        num_high_levels: int = 3,
        num_high_updates: int = 2,
        num_blocks: int = 3,
        attention: str = "kda",
        low_ffn_ratio: int = 8,
        low_query_mode: str = "released",
        value_placement: str = "auto",
        num_points: int = 4,
        use_key_proj: bool = False,
    ):
        super().__init__()
        check_encoder_arguments(
            embed_dim=embed_dim, num_heads=num_heads, feedforward_dim=feedforward_dim, num_points=num_points,
            attn_dropout=attn_dropout, ffn_dropout=ffn_dropout, post_norm=post_norm,
            use_checkpoint=use_checkpoint, use_key_proj=use_key_proj,
        )
        try:
            attention_class = ATTENTION_REGISTRY.resolve(attention)
        except UnknownComponentError as exc:
            raise ValueError(f"LiteEncoder: attention={attention!r} is unknown: {exc}") from None
        if low_query_mode not in LOW_QUERY_MODES:
            raise ValueError(f"low_query_mode must be 'released' or 'paper', got {low_query_mode!r}")
        if value_placement not in VALUE_PLACEMENTS:
            raise ValueError(f"value_placement must be one of {VALUE_PLACEMENTS}, got {value_placement!r}")
        if not isinstance(num_feature_levels, int) or num_feature_levels < 1:
            raise ValueError(f"num_feature_levels must be a positive integer, got {num_feature_levels!r}")
        if not isinstance(low_ffn_ratio, int) or not 1 <= low_ffn_ratio <= feedforward_dim:
            raise ValueError(f"low_ffn_ratio (λ) must be an integer in [1, feedforward_dim], got {low_ffn_ratio!r}")

        self.lite: Optional[LiteVariant]
        if variant is not None and str(variant).strip().lower() == STANDARD:
            self.lite = None
            num_layers = 6 if num_layers is None else num_layers
            if not isinstance(num_layers, int) or num_layers < 1:
                raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        else:
            if variant is not None:
                parsed = parse_variant(variant)
                if parsed.num_levels != num_feature_levels:
                    raise ValueError(
                        f"variant {parsed.name} describes {parsed.num_levels} feature levels "
                        f"(H{parsed.num_high_levels} + L{parsed.num_low_levels}) but num_feature_levels="
                        f"{num_feature_levels}"
                    )
                num_high_levels, num_high_updates, num_blocks = (
                    parsed.num_high_levels, parsed.num_high_updates, parsed.num_blocks,
                )
            self.lite = variant_for_levels(num_feature_levels, num_high_levels, num_high_updates, num_blocks)
            if num_layers is not None and num_layers != self.lite.num_layers:
                raise ValueError(
                    f"num_layers={num_layers} contradicts variant {self.lite.name}, which has "
                    f"(A+1)*B = {self.lite.num_layers} layers; leave num_layers unset"
                )
            num_layers = self.lite.num_layers

        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.num_feature_levels = num_feature_levels
        self.feedforward_dim = feedforward_dim
        self.attention = ATTENTION_REGISTRY.short_name(attention_class)
        self.low_query_mode = low_query_mode
        self.value_placement = value_placement
        self.low_ffn_dim = feedforward_dim // low_ffn_ratio
        self.use_checkpoint = use_checkpoint
        self.pre_norm = False

        def make_layer(full_ffn: bool, light_ffn: bool) -> LiteEncoderLayer:
            attention_module = build_attention(
                attention_class,
                embed_dim=embed_dim,
                num_heads=num_heads,
                num_levels=num_feature_levels,
                num_points=num_points,
                dropout=attn_dropout,
                batch_first=True,
                value_placement=value_placement,
                use_key_proj=use_key_proj,
            )
            return LiteEncoderLayer(
                attention_module,
                embed_dim,
                FFN(embed_dim, feedforward_dim, ffn_dropout) if full_ffn else None,
                FFN(embed_dim, self.low_ffn_dim, ffn_dropout) if light_ffn else None,
            )

        layers: List[LiteEncoderLayer] = []
        if self.lite is None:
            layers = [make_layer(True, False) for _ in range(num_layers)]
        else:
            released = low_query_mode == "released"
            for _ in range(self.lite.num_blocks):
                layers += [make_layer(True, False) for _ in range(self.lite.num_high_updates)]
                layers.append(make_layer(full_ffn=released, light_ffn=True))
        self.layers = nn.ModuleList(layers)
        self.post_norm_layer = nn.LayerNorm(embed_dim) if post_norm else None

    @property
    def variant(self) -> str:
        return STANDARD if self.lite is None else self.lite.name

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant!r}, attention={self.attention!r}, low_query_mode={self.low_query_mode!r}, "
            f"value_placement={self.value_placement!r}, low_ffn_dim={self.low_ffn_dim}"
        )

    def forward(
        self,
        query: torch.Tensor,
        key: Optional[torch.Tensor] = None,
        value: Optional[torch.Tensor] = None,
        query_pos: Optional[torch.Tensor] = None,
        key_pos: Optional[torch.Tensor] = None,
        attn_masks=None,
        query_key_padding_mask: Optional[torch.Tensor] = None,
        key_padding_mask: Optional[torch.Tensor] = None,
        spatial_shapes: Optional[torch.Tensor] = None,
        reference_points: Optional[torch.Tensor] = None,
        level_start_index: Optional[torch.Tensor] = None,
        valid_ratios: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> torch.Tensor:
        """detrex's encoder call.

        Args:
            query: ``[bs, N, C]`` flattened features, level 0 (highest resolution) first.
            query_pos: ``[bs, N, C]`` position + level embeddings.
            query_key_padding_mask: ``[bs, N]`` bool, True at padding.
            spatial_shapes: ``[L, 2]`` int64 (H, W).
            reference_points: ``[bs, N, L, 2]`` (x, y), already scaled by valid_ratios.
            level_start_index: ``[L]`` int64.
            key, value, key_pos, attn_masks, key_padding_mask, valid_ratios, kwargs:
                accepted for detrex compatibility and unused (detrex passes None).

        Returns:
            ``[bs, N, C]``, all tokens in the input order.
        """
        if spatial_shapes is None or level_start_index is None or reference_points is None:
            raise ValueError("LiteEncoder: spatial_shapes, level_start_index and reference_points are required")
        if query.dim() != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(
                f"LiteEncoder: query must be [bs, N, C={self.embed_dim}], got shape {list(query.shape)}"
            )
        if spatial_shapes.shape[0] != self.num_feature_levels:
            raise ValueError(
                f"LiteEncoder was built for num_feature_levels={self.num_feature_levels} but got "
                f"{spatial_shapes.shape[0]} levels (spatial_shapes {list(spatial_shapes.shape)})"
            )
        mask = query_key_padding_mask
        context = (mask, spatial_shapes, level_start_index)
        src = query
        if self.lite is None:
            for layer in self.layers:
                src = self._run(layer, src, src, query_pos, reference_points, *context)
        else:
            num_low = self._num_low_tokens(level_start_index, query.shape[1])
            high_pos = None if query_pos is None else query_pos[:, num_low:]
            low_pos = None if query_pos is None else query_pos[:, :num_low]
            high_ref, low_ref = reference_points[:, num_low:], reference_points[:, :num_low]
            per_block = self.lite.num_high_updates + 1
            for index, layer in enumerate(self.layers):
                if (index + 1) % per_block:  # a high-level update
                    high = self._run(layer, src[:, num_low:], src, high_pos, high_ref, *context)
                    src = torch.cat([src[:, :num_low], high], dim=1)
                elif self.low_query_mode == "released":  # every token queries
                    src = self._run(layer, src, src, query_pos, reference_points, *context, num_light_rows=num_low)
                else:  # eq. (2): the low-level tokens query
                    low = self._run(layer, src[:, :num_low], src, low_pos, low_ref, *context)
                    src = torch.cat([low, src[:, num_low:]], dim=1)
        if self.post_norm_layer is not None:
            src = self.post_norm_layer(src)
        return src

    def _num_low_tokens(self, level_start_index: torch.Tensor, num_tokens: int) -> int:
        """The number of low-level tokens: where the first high-level level starts.

        The one host read of a forward (a device sync on CUDA). ``.item()`` with
        ``torch._check`` bounds, not ``int()``: under torch.compile / torch.export it becomes
        an unbacked size that the slices below accept, with no graph break or guard.
        """
        num_low = level_start_index[self.num_feature_levels - self.lite.num_high_levels].item()
        if torch.jit.is_tracing():  # the tracer (fvcore's FLOP count) hands back a 0-dim tensor
            return int(num_low)
        torch._check(num_low >= 0)
        torch._check(num_low <= num_tokens)
        return num_low

    def _run(self, layer, query, value, query_pos, reference_points, mask, spatial_shapes, level_start_index,
             num_light_rows: int = 0):
        args = (query, value, query_pos, reference_points, mask, spatial_shapes, level_start_index, num_light_rows)
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)
