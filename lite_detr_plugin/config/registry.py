"""Registries of the plugin's components (fvcore's Registry, re-exported by detectron2).

Everything here also works as a LazyCall target; the registries let code pick
components by name, e.g. ``ENCODER_REGISTRY.get("LiteEncoder")(**kwargs)``.
"""
from fvcore.common.registry import Registry

from ..encoders import LiteEncoder
from ..layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention

ENCODER_REGISTRY = Registry("LITE_DETR_ENCODER")
ENCODER_REGISTRY.__doc__ = "Encoders with detrex's encoder interface."
ENCODER_REGISTRY.register(LiteEncoder)

ATTENTION_REGISTRY = Registry("LITE_DETR_ATTENTION")
ATTENTION_REGISTRY.__doc__ = "Attention modules with detrex's MultiScaleDeformableAttention interface."
ATTENTION_REGISTRY.register(KeyAwareDeformableAttention)
ATTENTION_REGISTRY.register(MultiScaleDeformableAttention)
