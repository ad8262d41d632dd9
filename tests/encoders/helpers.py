"""Small encoders and detrex-shaped inputs for the encoder tests (C=32, 4 heads, 2 points)."""
from typing import Dict, Optional, Sequence, Tuple

import torch

from lite_detr_plugin import LiteEncoder
from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs

from ..helpers.modules import perturb_parameters_

SMALL = dict(embed_dim=32, num_heads=4, feedforward_dim=64, attn_dropout=0.0, ffn_dropout=0.0, num_points=2)

# Two images padded to a 64x96 canvas: level shapes 8x12, 4x6, 2x3, 1x2 (128 tokens) with
# 4 levels, 16x24 ... 1x2 (512 tokens) with 5; the second image is padded on two sides.
IMAGES = ((64, 96), (40, 64))

# The paper's 4-level variants, and 5-level ones (the 5scale configs).
PAPER_VARIANTS_4 = ("H2L2-(2+1)x3", "H3L1-(6+1)x1", "H3L1-(3+1)x2", "H3L1-(2+1)x3")
VARIANTS_5 = ("H3L2-(2+1)x2", "H4L1-(1+1)x2")


def num_levels_of(variant: str) -> int:
    if variant == "standard":
        return 4
    h, rest = variant[1:].split("L", 1)
    return int(h) + int(rest.split("-", 1)[0])


def make_encoder(variant: str = "H3L1-(2+1)x3", *, num_levels: Optional[int] = None,
                 dtype: torch.dtype = torch.float64, seed: int = 0, perturb: bool = True,
                 train: bool = False, **kwargs) -> LiteEncoder:
    """A small LiteEncoder with perturbed weights (every query samples its own locations)."""
    if num_levels is None:
        num_levels = num_levels_of(variant)
    options = dict(SMALL)
    options.update(kwargs)
    torch.manual_seed(seed)
    encoder = LiteEncoder(num_feature_levels=num_levels, variant=variant, **options)
    if perturb:
        perturb_parameters_(encoder, std=0.05, seed=seed)
    encoder.to(dtype)
    return encoder.train(train)


def make_inputs(num_levels: int = 4, *, dtype: torch.dtype = torch.float64, images: Sequence[Tuple[int, int]] = IMAGES,
                seed: int = 0, embed_dim: int = 32, requires_grad: bool = False,
                device="cpu") -> Dict[str, Optional[torch.Tensor]]:
    """detrex's encoder keywords (``encoder(**inputs)``); query and query_pos in ``dtype``."""
    inputs = detrex_encoder_kwargs(images, num_levels=num_levels, embed_dim=embed_dim, seed=seed, device=device)
    for name in ("query", "query_pos"):
        inputs[name] = inputs[name].to(dtype)
        if requires_grad:
            inputs[name].requires_grad_(True)
    # reference_points and valid_ratios stay float32: detrex computes them in float32
    # whatever the model's dtype (get_valid_ratio, get_reference_points).
    return inputs


def num_low_tokens(inputs, num_high_levels: int) -> int:
    level_start_index = inputs["level_start_index"]
    return int(level_start_index[len(level_start_index) - num_high_levels])


def load_shared(target: torch.nn.Module, source: torch.nn.Module) -> torch.nn.Module:
    """Copies every parameter ``target`` and ``source`` share by name (strict on the shared ones)."""
    missing, _ = target.load_state_dict(source.state_dict(), strict=False)
    for name in missing:
        raise AssertionError(f"{name} has no counterpart in the source module")
    return target
