"""Weights of detrex's standard deformable encoder -> a standard-configured LiteEncoder.

detrex's DINO / H-DETR / Deformable DETR encoders are ``TransformerLayerSequence``s
of ``BaseTransformerLayer(attn, ffn, norm, ("self_attn", "norm", "ffn", "norm"))``.
``LiteEncoder(variant="standard", attention="msda", value_placement="tokens")`` computes the
same function once it holds their weights under its own names.
"""
import re
from typing import Dict

import torch
from torch import nn

from .lite_encoder import LiteEncoder

# detrex key (per layer) -> LiteEncoder key
_LAYER_KEYS = (
    (r"attentions\.0\.(sampling_offsets|attention_weights|value_proj|output_proj)\.(weight|bias)", r"self_attn.\1.\2"),
    (r"norms\.0\.(weight|bias)", r"norm1.\1"),
    (r"ffns\.0\.layers\.0\.0\.(weight|bias)", r"ffn.fc1.\1"),
    (r"ffns\.0\.layers\.1\.(weight|bias)", r"ffn.fc2.\1"),
    (r"norms\.1\.(weight|bias)", r"norm2.\1"),
)


def convert_detrex_encoder_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Renames a detrex encoder state dict to LiteEncoder's names.

    Raises ValueError listing every key it cannot map, rather than converting part of it.
    """
    converted, unmapped = {}, []
    for key, tensor in state_dict.items():
        if key.startswith("post_norm_layer."):
            converted[key] = tensor
            continue
        match = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
        new_key = None
        if match is not None:
            for pattern, replacement in _LAYER_KEYS:
                if re.fullmatch(pattern, match.group(2)):
                    new_key = f"layers.{match.group(1)}." + re.sub(pattern, replacement, match.group(2))
                    break
        if new_key is None:
            unmapped.append(key)
        else:
            converted[new_key] = tensor
    if unmapped:
        raise ValueError(f"cannot map these detrex encoder keys to LiteEncoder: {unmapped}")
    return converted


def lite_encoder_from_detrex(encoder: nn.Module) -> LiteEncoder:
    """A standard-configured LiteEncoder holding the weights of detrex's ``encoder``.

    Works for ``DINOTransformerEncoder``, ``HDeformableDetrTransformerEncoder`` and
    ``DeformableDetrTransformerEncoder`` (any module with detrex's layer layout).
    """
    first = encoder.layers[0]
    attention = first.attentions[0]
    fc1 = first.ffns[0].layers[0][0]
    lite = LiteEncoder(
        embed_dim=attention.embed_dim,
        num_heads=attention.num_heads,
        feedforward_dim=fc1.out_features,
        attn_dropout=attention.dropout.p,
        ffn_dropout=first.ffns[0].layers[0][2].p,
        num_layers=len(encoder.layers),
        post_norm=getattr(encoder, "post_norm_layer", None) is not None,
        num_feature_levels=attention.num_levels,
        variant="standard",
        attention="msda",
        value_placement="tokens",
        num_points=attention.num_points,
    )
    parameter = next(encoder.parameters())
    lite.to(device=parameter.device, dtype=parameter.dtype)
    lite.load_state_dict(convert_detrex_encoder_state_dict(encoder.state_dict()), strict=True)
    return lite
