"""Attention modules with detrex's signatures, and the encoder FFN."""
from .deformable_attention import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from .ffn import FFN

__all__ = ["KeyAwareDeformableAttention", "MultiScaleDeformableAttention", "FFN"]
