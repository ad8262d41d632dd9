"""Registries and LazyCall-style instantiation of the plugin's components."""
import importlib

import pytest
import torch

from lite_detr_plugin import (
    ATTENTION_REGISTRY,
    ENCODER_REGISTRY,
    KeyAwareDeformableAttention,
    LiteEncoder,
    MultiScaleDeformableAttention,
)


def test_encoder_registry():
    assert ENCODER_REGISTRY.get("LiteEncoder") is LiteEncoder
    build = ENCODER_REGISTRY.get("LiteEncoder")
    encoder = build(embed_dim=32, num_heads=4, feedforward_dim=64, variant="H2L2-(2+1)x3")
    assert encoder.variant == "H2L2-(2+1)x3"
    with pytest.raises(KeyError):
        ENCODER_REGISTRY.get("DINOTransformerEncoder")


def test_attention_registry():
    assert ATTENTION_REGISTRY.get("KeyAwareDeformableAttention") is KeyAwareDeformableAttention
    assert ATTENTION_REGISTRY.get("MultiScaleDeformableAttention") is MultiScaleDeformableAttention
    assert {name for name, _ in ATTENTION_REGISTRY} == {"KeyAwareDeformableAttention", "MultiScaleDeformableAttention"}


def _locate(name):
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def tiny_instantiate(cfg):
    """detectron2's ``instantiate`` in miniature: depth first, ``_target_`` a callable or a
    dotted name, called with the remaining keys as keywords."""
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(tiny_instantiate(item) for item in cfg)
    if not isinstance(cfg, dict) or "_target_" not in cfg:
        return cfg
    kwargs = {key: tiny_instantiate(value) for key, value in cfg.items() if key != "_target_"}
    target = cfg["_target_"]
    return (_locate(target) if isinstance(target, str) else target)(**kwargs)


@pytest.mark.parametrize("target", [LiteEncoder, "lite_detr_plugin.LiteEncoder",
                                    "lite_detr_plugin.encoders.lite_encoder.LiteEncoder"])
def test_lazy_target_dict(target):
    cfg = dict(_target_=target, embed_dim=32, num_heads=4, feedforward_dim=64, attn_dropout=0.0, ffn_dropout=0.0,
               post_norm=False, num_feature_levels=5, use_checkpoint=False, variant="H3L2-(2+1)x2", attention="msda",
               low_query_mode="paper", value_placement="samples", low_ffn_ratio=4)
    encoder = tiny_instantiate(cfg)
    assert isinstance(encoder, LiteEncoder)
    assert (encoder.variant, encoder.attention, encoder.low_query_mode, encoder.num_feature_levels) == (
        "H3L2-(2+1)x2", "msda", "paper", 5)
    assert encoder.low_ffn_dim == 16


@pytest.mark.parametrize("cls", ["KeyAwareDeformableAttention", "MultiScaleDeformableAttention"])
def test_lazy_target_attention(cls):
    attn = tiny_instantiate(dict(_target_="lite_detr_plugin.layers." + cls, embed_dim=32, num_heads=4, num_levels=4,
                                 num_points=2, dropout=0.0, batch_first=True))
    assert type(attn).__name__ == cls and attn.batch_first


def test_omegaconf_dictconfig_target():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({
        "transformer": {
            "num_feature_levels": 4,
            "encoder": {"_target_": "lite_detr_plugin.LiteEncoder", "embed_dim": 32, "num_heads": 4,
                        "feedforward_dim": 64, "num_feature_levels": "${..num_feature_levels}",
                        "variant": "H3L1-(2+1)x3"},
        }
    })
    resolved = omegaconf.OmegaConf.to_container(cfg, resolve=True)
    encoder = tiny_instantiate(resolved["transformer"]["encoder"])
    assert encoder.num_feature_levels == 4 and encoder.num_layers == 9


def transformer_stub(encoder, cross_attn, num_feature_levels):
    """Stands for a detrex transformer: receives the built children."""
    assert encoder.num_feature_levels == num_feature_levels
    return torch.nn.ModuleDict(dict(encoder=encoder, cross_attn=cross_attn))


@pytest.mark.detrex
def test_detectron2_lazycall_and_instantiate(tmp_path):
    from detectron2.config import LazyCall as L
    from detectron2.config import LazyConfig, instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create()
    cfg.transformer = L(transformer_stub)(
        encoder=L(LiteEncoder)(embed_dim=32, num_heads=4, feedforward_dim=64, variant="H3L1-(2+1)x3",
                               num_feature_levels="${..num_feature_levels}", attention="kda"),
        cross_attn=L(KeyAwareDeformableAttention)(embed_dim=32, num_heads=4, num_levels=4, batch_first=True),
        num_feature_levels=4,
    )
    built = instantiate(cfg.transformer)
    assert isinstance(built["encoder"], LiteEncoder) and built["encoder"].variant == "H3L1-(2+1)x3"
    assert isinstance(built["cross_attn"], KeyAwareDeformableAttention)
    # a saved LazyConfig names the targets by import path, and loads back
    path = str(tmp_path / "cfg.yaml")
    LazyConfig.save(cfg, path)
    loaded = LazyConfig.load(path)
    target = loaded.transformer.encoder._target_
    assert isinstance(target, str) and _locate(target) is LiteEncoder
    assert isinstance(instantiate(loaded.transformer)["encoder"], LiteEncoder)
