"""Config helpers: registries and the LazyConfig encoder swap (detectron2 only inside functions)."""
from .registry import ATTENTION_REGISTRY, ENCODER_REGISTRY
from .swap import swap_encoder, use_kda_cross_attention
from .detrex import (
    DeformableLRFactor,
    DetrexNotFoundError,
    add_deformable_lr_factor,
    detrex_root,
    get_detrex_config,
    load_detrex_config,
    plugin_root,
)

__all__ = [
    "ATTENTION_REGISTRY",
    "ENCODER_REGISTRY",
    "swap_encoder",
    "use_kda_cross_attention",
    "detrex_root",
    "plugin_root",
    "load_detrex_config",
    "get_detrex_config",
    "DetrexNotFoundError",
    "add_deformable_lr_factor",
    "DeformableLRFactor",
]
