"""Records where deformable attention samples and with which weights, from the model's own forward.

Forward hooks on :class:`~lite_detr_plugin.layers.KeyAwareDeformableAttention` and
:class:`~lite_detr_plugin.layers.MultiScaleDeformableAttention` read each call's
inputs and recompute, with the module's own submodules, its sampling locations
and softmax weights: ``softmax(attention_weights(q))`` for MSDA, and for KDA
``softmax(q·k/√d)`` with ``q = query_proj(q)`` and ``k`` the key (``key_proj`` or
the values, as the module uses) sampled at the same locations. Nothing changes in
the modules: the hooks exist only inside a ``with AttentionRecorder(model):``
block, and the forward's outputs are not touched.

    with AttentionRecorder(model) as recorder:
        outputs = model(batched_inputs)
    record = recorder.records[-1]          # the last encoder attention call
    record.locations, record.weights       # [bs, Nq, M, L, P, 2], [bs, Nq, M, L, P]
"""
import inspect
from dataclasses import dataclass
from typing import Callable, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.deformable_attention import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from ..ops.reference import sample_levels

__all__ = ["AttentionRecord", "AttentionRecorder", "recompute_attention"]


@dataclass
class AttentionRecord:
    """One call of one attention module (batch-first, float32, on the CPU).

    Attributes:
        name: the module's name in the model (``transformer.encoder.layers.3.self_attn``).
        kind: ``"kda"`` or ``"msda"``.
        call: the index of this call among all recorded calls.
        locations: ``[bs, Nq, M, L, P, 2]`` (x, y) in [0, 1] of each level's (padded) map.
        weights: ``[bs, Nq, M, L, P]``; each head's L·P weights sum to 1.
        spatial_shapes: ``[L, 2]`` (H, W), level 0 = highest resolution.
        level_start_index: ``[L]``.
        query_start: when the queries are the tokens ``[query_start, query_start + Nq)`` of
            the values (encoder self-attention), else None (decoder queries).
    """

    name: str
    kind: str
    call: int
    locations: torch.Tensor
    weights: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    query_start: Optional[int]

    @property
    def num_queries(self) -> int:
        return self.weights.shape[1]

    def query_tokens(self) -> Optional[range]:
        """The token indices of the queries (encoder self-attention), else None."""
        if self.query_start is None:
            return None
        return range(self.query_start, self.query_start + self.num_queries)


_Attention = (KeyAwareDeformableAttention, MultiScaleDeformableAttention)


def _token_slice_start(query: torch.Tensor, value: torch.Tensor) -> Optional[int]:
    """Where ``query`` [bs, Nq, C] sits among the tokens of ``value`` [bs, S, C], if it is a slice of them."""
    num_query, num_value = query.shape[1], value.shape[1]
    if query.shape[0] != value.shape[0] or query.shape[2] != value.shape[2] or num_query > num_value:
        return None
    for start in (num_value - num_query, 0):
        if torch.equal(query, value[:, start : start + num_query]):
            return start
    return None


@torch.no_grad()
def recompute_attention(module: nn.Module, query, key=None, value=None, identity=None, query_pos=None,
                        key_padding_mask=None, reference_points=None, spatial_shapes=None,
                        level_start_index=None, **kwargs):
    """Locations ``[bs, Nq, M, L, P, 2]``, weights ``[bs, Nq, M, L, P]`` and the query's token start
    of one call of ``module`` with these (its forward's) arguments, in float32."""
    if not isinstance(module, _Attention):
        raise TypeError(f"recompute_attention: expected a lite_detr_plugin deformable attention, got {type(module).__name__}")
    if value is None:
        value = query
    raw_query = query
    if query_pos is not None:
        query = query + query_pos
    if not module.batch_first:
        query, value, raw_query = query.transpose(0, 1), value.transpose(0, 1), raw_query.transpose(0, 1)
    bs, num_query, _ = query.shape
    M, L, P, D = module.num_heads, module.num_levels, module.num_points, module.head_dim
    offsets = module.sampling_offsets(query).view(bs, num_query, M, L, P, 2)
    locations = module._sampling_locations(reference_points, offsets, spatial_shapes, num_query).float()
    if isinstance(module, MultiScaleDeformableAttention):
        weights = F.softmax(module.attention_weights(query).view(bs, num_query, M, L * P).float(), -1)
    else:
        queries = module.query_proj(query).view(bs, num_query, M, D).float()
        placement = module.placement(num_query, value.shape[1], query.device.type)
        # The key the op compares with: key_proj(x) if there is one; else the values, which are
        # value_proj(x) ("tokens"; "samples" computes the same after sampling) or x itself ("output").
        if module.key_proj is not None:
            linear = module.key_proj
        else:
            linear = None if placement == "output" else module.value_proj
        keys = module._project_tokens(linear, value, key_padding_mask).float()
        sampled = sample_levels(keys, spatial_shapes, level_start_index, locations)  # [bs, Nq, M, L, P, D]
        logits = torch.einsum("bqmd,bqmlpd->bqmlp", queries, sampled).reshape(bs, num_query, M, L * P)
        weights = F.softmax(logits * D**-0.5, -1)
    return locations, weights.view(bs, num_query, M, L, P), _token_slice_start(raw_query, value)


class AttentionRecorder:
    """Context manager that records every call of the model's deformable attention modules.

    Args:
        model: any module holding :class:`KeyAwareDeformableAttention` /
            :class:`MultiScaleDeformableAttention` submodules.
        include: which modules to record: a substring of their names (default
            ``"encoder"``), a predicate ``(name, module) -> bool``, or None for all.

    ``records`` is a list of :class:`AttentionRecord`, in call order.
    """

    def __init__(self, model: nn.Module, include: Union[str, Callable[[str, nn.Module], bool], None] = "encoder"):
        if include is None:
            keep = lambda name, module: True  # noqa: E731
        elif isinstance(include, str):
            keep = lambda name, module: include in name  # noqa: E731
        else:
            keep = include
        self.modules = [(n, m) for n, m in model.named_modules() if isinstance(m, _Attention) and keep(n, m)]
        if not self.modules:
            raise ValueError(
                f"AttentionRecorder: {type(model).__name__} has no lite_detr_plugin deformable attention matching "
                f"include={include!r} (detrex's own MultiScaleDeformableAttention is not recorded: swap it in with "
                "lite_detr_plugin.swap_encoder)"
            )
        self.records: List[AttentionRecord] = []
        self._handles = []

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            bound = inspect.signature(module.forward).bind(*args, **kwargs)
            locations, weights, start = recompute_attention(module, *bound.args, **bound.kwargs)
            self.records.append(
                AttentionRecord(
                    name=name,
                    kind="kda" if isinstance(module, KeyAwareDeformableAttention) else "msda",
                    call=len(self.records),
                    locations=locations.detach().cpu(),
                    weights=weights.detach().cpu(),
                    spatial_shapes=bound.arguments["spatial_shapes"].detach().cpu(),
                    level_start_index=bound.arguments["level_start_index"].detach().cpu(),
                    query_start=start,
                )
            )

        return hook

    def __enter__(self) -> "AttentionRecorder":
        self.records = []
        self._handles = [m.register_forward_hook(self._hook(n), with_kwargs=True) for n, m in self.modules]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
