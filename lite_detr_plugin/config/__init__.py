"""Config helpers: registries and the LazyConfig encoder swap (detectron2 only inside functions)."""
from .registry import ATTENTION_REGISTRY, ENCODER_REGISTRY
from .swap import swap_encoder, use_kda_cross_attention

__all__ = ["ATTENTION_REGISTRY", "ENCODER_REGISTRY", "swap_encoder", "use_kda_cross_attention"]
