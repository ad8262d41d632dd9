"""Turn a detrex DINO / H-DETR / Deformable DETR LazyConfig into its Lite counterpart.

Components are picked by name from ``ENCODER_REGISTRY`` / ``ATTENTION_REGISTRY``
(:mod:`lite_detr_plugin.registry`), so a user's registered attention or encoder
can be selected the same way as ours.
"""
from collections.abc import Mapping

from torch import nn

from .. import encoders  # noqa: F401  (registers "LiteEncoder")
from ..layers import MultiScaleDeformableAttention
from ..layers._detrex_compat import detrex_attention_class
from ..layers.factory import build_attention_like
from ..registry import ATTENTION_REGISTRY, ENCODER_REGISTRY, UnknownComponentError

# Keywords of detrex's encoders that carry over to LiteEncoder (num_layers does
# not: a Lite variant derives its own).
_CARRIED_KEYS = ("embed_dim", "num_heads", "feedforward_dim", "attn_dropout", "ffn_dropout", "post_norm", "use_checkpoint")


def swap_encoder(cfg, variant: str = "H3L1-(2+1)x3", attention: str = "kda", decoder_kda: bool = False,
                 encoder: str = "LiteEncoder", **encoder_kwargs):
    """Replace ``cfg.model.transformer.encoder`` with a :class:`LiteEncoder`, in place.

    Args:
        cfg: a detrex LazyConfig (the loaded config file or its ``model`` parent).
        variant: ``"H3L1-(2+1)x3"``-style, or ``"standard"``.
        attention: a name in ``ATTENTION_REGISTRY``: ``"kda"``, ``"msda"`` (Lite
            without KDA, "skipscale"), or a user's registered attention. The config
            keeps the name (a string), so it saves and loads as YAML.
        decoder_kda: also replace the decoder's deformable cross-attention with
            KDA, as the released Lite-DINO does.
        encoder: a name in ``ENCODER_REGISTRY`` (default ``"LiteEncoder"``); it is
            called with detrex's encoder keywords plus ``variant``, ``attention``
            and ``encoder_kwargs``.
        **encoder_kwargs: further LiteEncoder keywords (``low_query_mode``,
            ``value_placement``, ``low_ffn_ratio``, ...).

    Returns:
        ``cfg``, edited in place.

    Raises:
        ValueError: not a detrex DETR config, or an unknown encoder/attention name
            (the message lists the registered names).
    """
    from detectron2.config import LazyCall as L

    encoder_class = _resolve(ENCODER_REGISTRY, "encoder", encoder)
    attention = ATTENTION_REGISTRY.short_name(_resolve(ATTENTION_REGISTRY, "attention", attention))

    model = _child(cfg, "model")
    transformer = _child(model, "transformer")
    old = _child(transformer, "encoder")
    if old is None:
        raise ValueError(
            "swap_encoder expects a detrex DETR config with cfg.model.transformer.encoder "
            f"(DINO, H-DETR or Deformable DETR), got cfg of type {type(cfg).__name__} without it"
        )
    decoder = _child(transformer, "decoder")
    if decoder_kda and (decoder is None or "_target_" not in decoder):
        raise ValueError("swap_encoder(decoder_kda=True) expects a LazyCall node at cfg.model.transformer.decoder")
    kwargs = {key: old[key] for key in _CARRIED_KEYS if key in old}
    kwargs["num_feature_levels"] = "${..num_feature_levels}"
    kwargs.update(variant=variant, attention=attention)
    kwargs.update(encoder_kwargs)
    transformer.encoder = L(encoder_class)(**kwargs)
    if decoder_kda:
        if decoder.get("_target_") is not build_decoder_with_kda:
            # Same node, same depth: the decoder's relative interpolations
            # (e.g. "${..num_feature_levels}") keep resolving as before.
            decoder.decoder_class = decoder._target_
            decoder._target_ = build_decoder_with_kda
    return cfg


def build_decoder_with_kda(decoder_class, **decoder_kwargs) -> nn.Module:
    """Builds ``decoder_class(**decoder_kwargs)`` and gives it KDA cross-attention.

    The LazyCall target :func:`swap_encoder` sets for ``decoder_kda=True``.
    """
    return use_kda_cross_attention(decoder_class(**decoder_kwargs))


def use_kda_cross_attention(decoder: nn.Module, value_placement: str = "auto", use_key_proj: bool = False,
                            attention: str = "kda") -> nn.Module:
    """Replace every deformable attention of a built decoder with KDA (or ``attention``), in place.

    Each detrex (or lite_detr) ``MultiScaleDeformableAttention`` becomes the
    registered ``attention`` (default ``"kda"``: :class:`KeyAwareDeformableAttention`)
    with the same embed_dim, heads, levels, points, dropout and batch_first.
    """
    attention_class = _resolve(ATTENTION_REGISTRY, "attention", attention)
    targets = tuple(t for t in (detrex_attention_class(), MultiScaleDeformableAttention) if t is not None)
    replaced = 0
    for parent in list(decoder.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, attention_class) or not isinstance(child, targets):
                continue
            replacement = build_attention_like(attention_class, child, value_placement=value_placement,
                                               use_key_proj=use_key_proj)
            setattr(parent, name, replacement)
            replaced += 1
    if replaced == 0:
        raise ValueError(f"use_kda_cross_attention: {type(decoder).__name__} has no deformable attention to replace")
    return decoder


def _child(node, key: str):
    """``node[key]`` when ``node`` is a config node holding a config node there, else None."""
    if not isinstance(node, Mapping) or key not in node:
        return None
    child = node[key]
    return child if isinstance(child, Mapping) else None


def _resolve(registry, argument: str, name):
    try:
        return registry.resolve(name)
    except UnknownComponentError as exc:
        raise ValueError(f"{argument}={name!r} is unknown: {exc}") from None
