"""Reading a released Lite-DETR checkpoint: its state dict and its encoder variant."""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple, Union

import torch

from ..encoders.variants import LiteVariant, make_variant, parse_variant
from .rules import ConversionError

# ``r50_s3ex3_50.4.pth``: s = enc_scale (H, the high-level scales), ex = num_expansion (B).
_NAME_HINT = re.compile(r"(?:^|[^a-z0-9])s(\d+)ex(\d+)(?:[^a-z0-9]|$)", re.IGNORECASE)
_ENCODER_LAYER = re.compile(r"transformer\.encoder\.layers\.(\d+)\.(.+)")


def extract_state_dict(checkpoint: Mapping, key: str = "auto") -> Mapping[str, torch.Tensor]:
    """The model state dict inside a loaded checkpoint.

    ``key="auto"`` takes ``checkpoint["model"]`` (what Lite-DETR's ``main.py`` saves),
    else ``checkpoint["state_dict"]``, else the mapping itself if it holds tensors.
    ``key="ema_model"`` picks the EMA weights when the checkpoint has them.
    """
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"a checkpoint must be a dict, got {type(checkpoint).__name__}")
    if key != "auto":
        if key not in checkpoint:
            raise ConversionError(f"the checkpoint has no {key!r} entry; it has {sorted(checkpoint)}")
        return checkpoint[key]
    for candidate in ("model", "state_dict"):
        if candidate in checkpoint and isinstance(checkpoint[candidate], Mapping):
            return checkpoint[candidate]
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    raise ConversionError(
        f"cannot find the model state dict in the checkpoint (entries: {sorted(checkpoint)}); pass the entry name"
    )


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> Tuple[Dict, str]:
    """Removes a DDP-style prefix when every key has it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()), prefix
    return OrderedDict(state_dict), ""


def encoder_blocks(state_dict: Mapping[str, torch.Tensor]) -> Tuple[int, int]:
    """``(A, B)`` from the checkpoint: its encoder layer count and which layers have ``linear12``.

    The released encoder has B blocks of A layers plus one layer with the light
    FFN, so the light layers must be exactly every (A+1)-th.
    """
    layers, light = set(), set()
    for name in state_dict:
        match = _ENCODER_LAYER.fullmatch(name)
        if match is not None:
            index = int(match.group(1))
            layers.add(index)
            if match.group(2).split(".")[0] in ("linear12", "linear22", "norm22"):
                light.add(index)
    if not layers:
        raise ConversionError("the checkpoint has no transformer.encoder.layers.* keys: not a Lite-DETR DINO model")
    num_layers = max(layers) + 1
    if layers != set(range(num_layers)):
        raise ConversionError(f"encoder layer indices are not contiguous: {sorted(layers)}")
    if not light:
        raise ConversionError(
            "no encoder layer has linear12/linear22/norm22: the checkpoint was trained without small_expand, "
            "which the released Lite encoder layout requires"
        )
    light = sorted(light)
    per_block = light[0] + 1
    expected = list(range(per_block - 1, num_layers, per_block))
    if per_block < 2 or light != expected or num_layers % per_block:
        raise ConversionError(
            f"the light FFN (linear12) sits in encoder layers {light} of {num_layers}: not an interleaved "
            f"(A+1)xB layout, which puts it in every (A+1)-th layer"
        )
    return per_block - 1, num_layers // per_block


def variant_from_name(name: str) -> Optional[Tuple[int, int]]:
    """``(H, B)`` from a released file name such as ``r50_s3ex3_50.4.pth``, or None."""
    match = _NAME_HINT.search(str(name).rsplit("/", 1)[-1])
    return (int(match.group(1)), int(match.group(2))) if match else None


def infer_variant(
    state_dict: Mapping[str, torch.Tensor],
    variant: Union[str, LiteVariant, None] = "auto",
    num_high_levels: Optional[int] = None,
    name_hint: Optional[str] = None,
) -> Tuple[LiteVariant, str]:
    """The checkpoint's encoder variant, and how it was determined.

    A and B come from the weights. H (how many of the lowest-resolution levels
    are high-level) leaves no trace in the weights: it comes from ``variant``,
    ``num_high_levels``, or a released file name (``s<H>ex<B>``). A given
    ``variant`` must agree with the weights.
    """
    state_dict, _ = strip_prefix(state_dict)
    num_high_updates, num_blocks = encoder_blocks(state_dict)
    level_embed = state_dict.get("transformer.level_embed")
    num_levels = int(level_embed.shape[0]) if level_embed is not None else 4
    if variant not in (None, "auto"):
        given = variant if isinstance(variant, LiteVariant) else parse_variant(variant)
        if (given.num_high_updates, given.num_blocks) != (num_high_updates, num_blocks):
            raise ConversionError(
                f"variant {given.name} has {given.num_layers} encoder layers in {given.num_blocks} blocks of "
                f"({given.num_high_updates}+1), but the checkpoint has {(num_high_updates + 1) * num_blocks} layers "
                f"in blocks of ({num_high_updates}+1)x{num_blocks}"
            )
        if given.num_levels != num_levels:
            raise ConversionError(f"variant {given.name} has {given.num_levels} levels, the checkpoint {num_levels}")
        if num_high_levels is not None and num_high_levels != given.num_high_levels:
            raise ConversionError(f"num_high_levels={num_high_levels} contradicts variant {given.name}")
        return given, "given"
    source = "num_high_levels"
    if num_high_levels is None and name_hint is not None:
        hint = variant_from_name(name_hint)
        if hint is not None:
            num_high_levels, hinted_blocks = hint
            source = f"file name s{hint[0]}ex{hint[1]}"
            if hinted_blocks != num_blocks:
                raise ConversionError(
                    f"the file name says num_expansion={hinted_blocks} but the weights have {num_blocks} blocks"
                )
    if num_high_levels is None:
        raise ConversionError(
            f"the weights give blocks ({num_high_updates}+1)x{num_blocks} but not H (enc_scale, the number of "
            f"high-level scales), which leaves no trace in the weights: pass a variant such as "
            f"'H3L1-({num_high_updates}+1)x{num_blocks}' or num_high_levels"
        )
    if not 1 <= num_high_levels < num_levels:
        raise ConversionError(f"H={num_high_levels} must be between 1 and {num_levels - 1}")
    found = make_variant(num_high_levels, num_levels - num_high_levels, num_high_updates, num_blocks)
    return found, f"A, B from the weights, H from {source}"
