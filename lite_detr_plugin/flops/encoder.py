"""Count an encoder's FLOPs with fvcore, on the inputs detrex gives it.

:func:`count_encoder` traces one forward of an encoder (``LiteEncoder``, a
detrex encoder, anything with detrex's encoder call) with
``fvcore.nn.FlopCountAnalysis`` and :func:`~lite_detr_plugin.flops.register_handles`,
on detrex-shaped inputs for one image (batch 1, no padding). It returns the
total, the counts per operator and per layer, and one record per deformable
attention call: how many queries and values it had, where its value
projection was applied, and what its value side cost.

The value side of a call is everything whose cost depends on where the value
projection is applied: the projection itself (``value_proj`` over the S value
tokens, after sampling, or on the aggregated output), a separate ``key_proj``,
the sampling, and for KDA's "samples" placement the fold of the query into the
input space. Everything else (offsets, attention weights or query projection,
output projection, FFN, LayerNorm) is the same in every placement.
"""
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..layers.placement import choosing_by
from .handles import (
    FUNCTION_OP_NAMES,
    KDA_OP_NAMES,
    MSDA_OP_NAMES,
    check_deformable_ops_counted,
    register_handles,
)

Shape = Tuple[int, int]

# The counter keys of the sampling terms (fvcore drops the namespace).
SAMPLING_KEYS = tuple(name.split("::", 1)[-1] for name in KDA_OP_NAMES + MSDA_OP_NAMES) + tuple(
    name.split(".", 1)[1] for name in FUNCTION_OP_NAMES
) + ("grid_sampler",)


def parse_size(text: str) -> Tuple[int, int]:
    """``"850x1040"`` (height × width; ``x``, ``×``, ``,`` or ``*``) -> (850, 1040)."""
    for sep in ("x", "X", "×", ",", "*"):
        if sep in text:
            parts = text.split(sep)
            break
    else:
        parts = [text, text]
    try:
        height, width = (int(p.strip()) for p in parts)
    except ValueError:
        raise ValueError(f"size must be HxW (height x width, e.g. 850x1040), got {text!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return height, width


def size_argument(text: str) -> Tuple[int, int]:
    """:func:`parse_size` as an argparse ``type``: a bad size is a usage error, not a traceback."""
    import argparse

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def level_shapes(height: int, width: int, num_levels: int = 4) -> List[Shape]:
    """Feature-map sizes of a ``height × width`` image: strides 8..64 (each stage halves with ceil)."""
    from ..encoders.inputs import feature_shapes

    return [tuple(s) for s in feature_shapes(height, width, num_levels)]


def require_compiled_ops(device: str = "cpu") -> None:
    """Raise unless the compiled ``lite_detr`` ops serve ``device``.

    Without them the modules run the PyTorch reference, which traces as
    ``grid_sampler`` and einsums and counts a different (reference) algorithm.
    """
    from .. import ops

    if not ops.has_kernel(device):
        raise RuntimeError(
            f"lite_detr_plugin's compiled deformable-attention ops are not available for {device} "
            f"({ops.build_info()}); FLOP reports count the compiled op, not the PyTorch reference. "
            "Reinstall with `pip install --no-build-isolation .` so that lite_detr_plugin._C is built."
        )


class _EncoderCall(nn.Module):
    """Positional wrapper so that jit tracing sees detrex's keyword call ``encoder(query=..., ...)``."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, query, query_pos, mask, spatial_shapes, level_start_index, reference_points, valid_ratios):
        return self.encoder(
            query=query,
            key=None,
            value=None,
            query_pos=query_pos,
            query_key_padding_mask=mask,
            spatial_shapes=spatial_shapes,
            reference_points=reference_points,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
        )


def encoder_inputs(shapes: Sequence[Shape], embed_dim: int = 256, seed: int = 0) -> Dict[str, torch.Tensor]:
    """detrex's encoder keyword arguments for one unpadded image whose levels have ``shapes``.

    The construction of :func:`lite_detr_plugin.encoders.inputs.detrex_encoder_kwargs`,
    for explicit level shapes (e.g. only the lowest-resolution levels).

    The mask is all False, the valid ratios are 1, the reference points are
    the pixel centres (detrex's ``get_reference_points``), as at evaluation.
    """
    from ..encoders.inputs import encoder_reference_points, level_layout, sine_position_embedding

    shapes = [tuple(int(v) for v in s) for s in shapes]
    spatial_shapes, level_start_index = level_layout(shapes)
    generator = torch.Generator().manual_seed(seed)
    num_tokens = sum(h * w for h, w in shapes)
    query = torch.randn(1, num_tokens, embed_dim, generator=generator)
    level_embeds = torch.randn(len(shapes), embed_dim, generator=generator)
    pos = []
    for level, (h, w) in enumerate(shapes):
        embedding = sine_position_embedding(torch.zeros(1, h, w, dtype=torch.bool), num_pos_feats=embed_dim // 2)
        pos.append(embedding.flatten(2).transpose(1, 2) + level_embeds[level].view(1, 1, -1))
    ratios = torch.ones(1, len(shapes), 2)
    return dict(
        query=query,
        query_pos=torch.cat(pos, 1),
        query_key_padding_mask=torch.zeros(1, num_tokens, dtype=torch.bool),
        spatial_shapes=spatial_shapes,
        level_start_index=level_start_index,
        reference_points=encoder_reference_points(spatial_shapes, ratios),
        valid_ratios=ratios,
    )


@dataclass
class AttentionCall:
    """One call of a deformable attention module during the counted forward.

    Attributes:
        module: its name in the counted model (e.g. ``encoder.layers.2.self_attn``).
        num_query, num_value: Nq and S.
        placement: where this call applied the value projection:
            ``"tokens"`` (value_proj over the S tokens, then sampling of D
            channels per head), ``"samples"`` (sampling of the raw C + 1 input
            channels, then each head's exact projection; KDA also folds its
            query) or ``"output"`` (each head samples its own D raw channels,
            value_proj on the aggregated output: the released code's
            ``value_proj_after``, a different model).
        value_side: FLOPs of the value side as counted (see the module docstring).
        sampling: the sampling part of it (the rest is projections:
            ``value_proj`` / ``key_proj``, and the "samples" placement's per-head
            projection and query fold).
    """

    module: str
    num_query: int
    num_value: int
    placement: Optional[str]
    embed_dim: int
    num_heads: int
    num_levels: int
    num_points: int
    attention: str
    separate_key: bool
    value_side: int = 0
    sampling: int = 0


@dataclass
class EncoderFlops:
    """fvcore's count of one encoder forward (FLOPs; one multiply-add = 1)."""

    total: int
    by_operator: Counter
    by_module: Dict[str, int]
    by_module_and_operator: Dict[str, Counter]
    attention_calls: List[AttentionCall]
    unsupported_ops: Counter
    shapes: List[Shape]
    counting: str
    prefix: str = "encoder"
    layers: List[str] = field(default_factory=list)

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    @property
    def value_side(self) -> int:
        return sum(call.value_side for call in self.attention_calls)

    def module_total(self, name: str) -> int:
        return int(self.by_module.get(name, 0))

    def layer_terms(self, layer: str) -> Dict[str, int]:
        """The FLOPs of one layer (e.g. ``encoder.layers.0``) split into named terms that sum to its total."""
        return layer_terms(self, layer)


def _attention_modules(model: nn.Module):
    from ..layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention

    kinds = (KeyAwareDeformableAttention, MultiScaleDeformableAttention)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def count_encoder(
    encoder: nn.Module,
    shapes: Sequence[Shape],
    counting: str = "paper",
    inputs: Optional[Dict[str, torch.Tensor]] = None,
    require_compiled: bool = True,
) -> EncoderFlops:
    """Trace one forward of ``encoder`` on detrex-shaped inputs and count it with fvcore.

    Args:
        encoder: called as detrex calls its encoder (keywords ``query``, ``query_pos``,
            ``query_key_padding_mask``, ``spatial_shapes``, ``reference_points``,
            ``level_start_index``, ``valid_ratios``; ``key=value=None``).
        shapes: (H, W) of each feature level, level 0 = highest resolution.
        counting: the counting conventions, "paper" or "full" (see :mod:`lite_detr_plugin.flops.handles`).
        inputs: override the inputs (default :func:`encoder_inputs`).
        require_compiled: raise unless the compiled lite_detr ops are loaded.

    ``value_placement="auto"`` attentions choose by FLOPs inside the count
    (:func:`lite_detr_plugin.layers.placement.choosing_by`), so a count does not depend on
    the machine it runs on. fvcore's own conventions hold: element-wise ops are free (listed in
    :data:`~lite_detr_plugin.flops.handles.ELEMENTWISE_OPS`), LayerNorm costs 5
    per element, linear layers and einsums one per multiply-add.
    """
    from fvcore.nn import FlopCountAnalysis

    if require_compiled:
        require_compiled_ops("cpu")
    if inputs is None:
        embed_dim = getattr(encoder, "embed_dim", 256)
        inputs = encoder_inputs(shapes, embed_dim=embed_dim)
    wrapper = _EncoderCall(encoder).eval()
    args = tuple(
        inputs[k]
        for k in (
            "query", "query_pos", "query_key_padding_mask", "spatial_shapes", "level_start_index",
            "reference_points", "valid_ratios",
        )
    )

    calls: List[AttentionCall] = []
    hooks = []

    def record(name, module):
        def hook(mod, args, kwargs):
            query = args[0] if args else kwargs["query"]
            value = kwargs.get("value")
            if value is None:
                value = args[2] if len(args) > 2 and args[2] is not None else query
            q_rows = query.shape[1] if mod.batch_first else query.shape[0]
            v_rows = value.shape[1] if mod.batch_first else value.shape[0]
            placement = mod.placement(int(q_rows), int(v_rows), cost="flops")
            calls.append(
                AttentionCall(
                    module=name,
                    num_query=int(q_rows),
                    num_value=int(v_rows),
                    placement=placement,
                    embed_dim=mod.embed_dim,
                    num_heads=mod.num_heads,
                    num_levels=mod.num_levels,
                    num_points=mod.num_points,
                    attention="kda" if hasattr(mod, "query_proj") else "msda",
                    separate_key=getattr(mod, "key_proj", None) is not None,
                )
            )

        return hook

    for name, module in _attention_modules(wrapper):
        hooks.append(module.register_forward_pre_hook(record(name, module), with_kwargs=True))
    try:
        with torch.no_grad(), choosing_by("flops"):
            analysis = FlopCountAnalysis(wrapper, args)
            register_handles(analysis, counting=counting, ignore_elementwise=True)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            unsupported = check_deformable_ops_counted(analysis)
    finally:
        for hook in hooks:
            hook.remove()

    by_mod_op = {name: Counter(counter) for name, counter in analysis.by_module_and_operator().items()}
    by_module = {name: int(sum(c.values())) for name, c in by_mod_op.items()}
    for call in calls:
        call.value_side = _counted_value_side(by_mod_op, call.module)
        call.sampling = _sum(by_mod_op.get(call.module), SAMPLING_KEYS)
    layer_names = sorted(
        {call.module.rsplit(".", 1)[0] for call in calls},
        key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")],
    )
    return EncoderFlops(
        total=int(analysis.total()),
        by_operator=Counter(analysis.by_operator()),
        by_module=by_module,
        by_module_and_operator=by_mod_op,
        attention_calls=calls,
        unsupported_ops=unsupported,
        shapes=[tuple(s) for s in shapes],
        counting=counting,
        layers=layer_names,
    )


def _sum(counter: Optional[Counter], keys=None) -> int:
    if not counter:
        return 0
    if keys is None:
        return int(sum(counter.values()))
    return int(sum(v for k, v in counter.items() if k in keys))


def _counted_value_side(by_mod_op: Dict[str, Counter], attn: str) -> int:
    own = by_mod_op.get(attn, Counter())
    return (
        _sum(by_mod_op.get(f"{attn}.value_proj"))
        + _sum(by_mod_op.get(f"{attn}.key_proj"))
        + _sum(own, SAMPLING_KEYS)
        + _sum(own, ("einsum",))
    )


#: The terms of :func:`layer_terms`, in display order.
LAYER_TERMS = (
    "sampling_offsets",
    "attention_weights",
    "query_proj",
    "value_proj",
    "key_proj",
    "sampling",
    "einsum",
    "attention_math",
    "output_proj",
    "ffn",
    "light_ffn",
    "layer_norm",
    "other",
)


def layer_terms(flops: EncoderFlops, layer: str) -> Dict[str, int]:
    """Split one layer's count into :data:`LAYER_TERMS` (they sum to the layer's total).

    ``value_proj`` is the value projection wherever it is applied (over the
    tokens, or on the aggregated output for "output"); ``sampling`` the
    deformable op's sampling; ``einsum`` the "samples" placement's exact
    per-head projection after sampling and KDA's query fold;
    ``attention_math`` "full" counting's q·k, softmax and weighted sum.
    """
    c = flops.by_module_and_operator
    attn = f"{layer}.self_attn"
    terms = {name: 0 for name in LAYER_TERMS}
    for sub in ("sampling_offsets", "attention_weights", "query_proj", "value_proj", "key_proj", "output_proj"):
        terms[sub] = _sum(c.get(f"{attn}.{sub}"))
    own = c.get(attn, Counter())
    terms["sampling"] = _sum(own, SAMPLING_KEYS)
    terms["einsum"] = _sum(own, ("einsum",))
    terms["attention_math"] = int(sum(v for k, v in own.items() if ":" in k or k == "softmax"))
    terms["ffn"] = _sum(c.get(f"{layer}.ffn"))
    terms["light_ffn"] = _sum(c.get(f"{layer}.light_ffn"))
    norms = sum(_sum(c.get(f"{layer}.{n}")) for n in ("norm1", "norm2", "light_norm"))
    terms["layer_norm"] = norms
    total = _sum(c.get(layer))
    terms["other"] = total - sum(terms.values())
    return terms
