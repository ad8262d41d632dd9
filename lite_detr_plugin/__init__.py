"""Lite DETR for detectron2/detrex: interleaved encoder and key-aware deformable attention.

Importing this package never requires detectron2 or detrex.
"""
from . import ops
from .config import ATTENTION_REGISTRY, ENCODER_REGISTRY, swap_encoder, use_kda_cross_attention
from .encoders import LiteEncoder, lite_encoder_from_detrex, parse_variant
from .layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention

__version__ = "0.1.0"

__all__ = [
    "ops",
    "LiteEncoder",
    "KeyAwareDeformableAttention",
    "MultiScaleDeformableAttention",
    "swap_encoder",
    "use_kda_cross_attention",
    "lite_encoder_from_detrex",
    "parse_variant",
    "ENCODER_REGISTRY",
    "ATTENTION_REGISTRY",
]
