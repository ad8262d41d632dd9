"""swap_encoder and use_kda_cross_attention without detectron2/detrex.

``swap_encoder`` only needs ``detectron2.config.LazyCall``; a stand-in module gives it
one that builds attribute dicts, and the detrex model configs are written out from
their files (contract §4). tests/detrex runs the real configs.
"""
import re
import sys
import types

import pytest
import torch
from torch import nn

from lite_detr_plugin import KeyAwareDeformableAttention, LiteEncoder, MultiScaleDeformableAttention
from lite_detr_plugin import swap_encoder, use_kda_cross_attention
from lite_detr_plugin.config.swap import build_decoder_with_kda

from ..helpers.fake_detrex import install_fake_detrex
from .test_registry import tiny_instantiate


class AttrDict(dict):
    """What a LazyConfig node offers swap_encoder: keys as attributes, ``in``, ``get``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


class FakeLazyCall:
    def __init__(self, target):
        self.target = target

    def __call__(self, **kwargs):
        return AttrDict(_target_=self.target, **kwargs)


def install_fake_detectron2(monkeypatch) -> None:
    """A ``detectron2.config`` module whose LazyCall is :class:`FakeLazyCall`, in ``sys.modules``."""
    detectron2 = types.ModuleType("detectron2")
    detectron2.__path__ = []
    config = types.ModuleType("detectron2.config")
    config.LazyCall = FakeLazyCall
    detectron2.config = config
    monkeypatch.setitem(sys.modules, "detectron2", detectron2)
    monkeypatch.setitem(sys.modules, "detectron2.config", config)


@pytest.fixture
def fake_detectron2(monkeypatch):
    install_fake_detectron2(monkeypatch)


def DINOTransformerEncoder(**kwargs):  # stand-ins for detrex's targets; never called here
    raise AssertionError("the old encoder must not be built")


def DINOTransformerDecoder(**kwargs):
    levels = kwargs["num_feature_levels"]
    return nn.ModuleList([MultiScaleDeformableAttention(embed_dim=32, num_heads=4, num_levels=levels, batch_first=True,
                                                        dropout=0.0)])


def dino_cfg(num_feature_levels=4):
    """projects/dino/configs/models/dino_r50.py's transformer part (encoder kwargs verbatim)."""
    return AttrDict(model=AttrDict(
        _target_="DINO",
        transformer=AttrDict(
            _target_="DINOTransformer",
            encoder=AttrDict(_target_=DINOTransformerEncoder, embed_dim=256, num_heads=8, feedforward_dim=2048,
                             attn_dropout=0.0, ffn_dropout=0.0, num_layers=6, post_norm=False,
                             num_feature_levels="${..num_feature_levels}", use_checkpoint=False),
            decoder=AttrDict(_target_=DINOTransformerDecoder, num_feature_levels="${..num_feature_levels}"),
            num_feature_levels=num_feature_levels,
            two_stage_num_proposals="${..num_queries}",
        ),
        num_queries=900,
    ))


def deformable_detr_cfg():
    """configs/models/deformable_detr_r50.py: FFN 1024, dropouts 0.1, no use_checkpoint."""
    cfg = dino_cfg()
    encoder = cfg.model.transformer.encoder
    encoder.update(feedforward_dim=1024, attn_dropout=0.1, ffn_dropout=0.1)
    del encoder["use_checkpoint"]
    return cfg


_RELATIVE = re.compile(r"^\$\{(\.+)(\w+)\}$")


def resolve(node, parents=()):
    """A copy of ``node`` with OmegaConf's relative interpolations resolved: in a value of
    node N, ``${.x}`` is N.x, ``${..x}`` is x in N's parent, and so on (a missing key
    raises KeyError, as OmegaConf raises InterpolationKeyError)."""
    if not isinstance(node, dict):
        return node
    chain = parents + (node,)
    out = {}
    for key, value in node.items():
        match = _RELATIVE.match(value) if isinstance(value, str) else None
        if match:
            dots, name = match.groups()
            if len(dots) > len(chain):
                raise KeyError(f"{value!r} climbs above the root")
            target = chain[len(chain) - len(dots)]
            if name not in target:
                raise KeyError(f"interpolation {value!r} of key {key!r}: {name!r} not found")
            value = target[name]
        out[key] = resolve(value, chain)
    return out


def build_encoder(cfg):
    """Resolves ``${..num_feature_levels}`` as LazyConfig would and instantiates the encoder."""
    assert cfg.model.transformer.encoder["num_feature_levels"] == "${..num_feature_levels}"
    return tiny_instantiate(resolve(cfg)["model"]["transformer"]["encoder"])


@pytest.mark.usefixtures("fake_detectron2")
def test_swap_dino():
    cfg = dino_cfg()
    decoder_before = cfg.model.transformer.decoder
    result = swap_encoder(cfg, variant="H3L1-(2+1)x3")
    assert result is cfg
    encoder_cfg = cfg.model.transformer.encoder
    assert encoder_cfg["_target_"] is LiteEncoder
    expected = dict(embed_dim=256, num_heads=8, feedforward_dim=2048, attn_dropout=0.0, ffn_dropout=0.0,
                    post_norm=False, use_checkpoint=False, num_feature_levels="${..num_feature_levels}",
                    variant="H3L1-(2+1)x3", attention="kda")
    assert {k: v for k, v in encoder_cfg.items() if k != "_target_"} == expected  # num_layers is not carried
    assert cfg.model.transformer.decoder is decoder_before  # decoder_kda=False leaves it alone
    encoder = build_encoder(cfg)
    assert isinstance(encoder, LiteEncoder) and encoder.num_layers == 9 and encoder.embed_dim == 256
    assert encoder.layers[0].ffn.fc1.out_features == 2048


@pytest.mark.usefixtures("fake_detectron2")
def test_swap_deformable_detr_has_no_use_checkpoint():
    cfg = swap_encoder(deformable_detr_cfg(), variant="H2L2-(2+1)x3", attention="msda")
    encoder_cfg = cfg.model.transformer.encoder
    assert "use_checkpoint" not in encoder_cfg
    assert (encoder_cfg.feedforward_dim, encoder_cfg.attn_dropout, encoder_cfg.attention) == (1024, 0.1, "msda")
    encoder = build_encoder(cfg)
    assert encoder.variant == "H2L2-(2+1)x3" and encoder.attention == "msda"
    assert encoder.layers[0].self_attn.dropout.p == 0.1


@pytest.mark.usefixtures("fake_detectron2")
def test_swap_five_levels_and_extra_keywords():
    cfg = swap_encoder(dino_cfg(num_feature_levels=5), variant="H3L2-(2+1)x2", low_query_mode="paper",
                       value_placement="samples", low_ffn_ratio=4)
    encoder = build_encoder(cfg)
    assert (encoder.num_feature_levels, encoder.low_query_mode, encoder.value_placement) == (5, "paper", "samples")
    assert encoder.low_ffn_dim == 2048 // 4


@pytest.mark.usefixtures("fake_detectron2")
def test_swap_decoder_kda_structure():
    cfg = dino_cfg()
    decoder_node = cfg.model.transformer.decoder
    swap_encoder(cfg, variant="H3L1-(2+1)x3", decoder_kda=True)
    decoder_cfg = cfg.model.transformer.decoder
    # the decoder node stays where it was, so its relative interpolations keep resolving
    assert decoder_cfg is decoder_node
    assert decoder_cfg["_target_"] is build_decoder_with_kda
    assert decoder_cfg.decoder_class is DINOTransformerDecoder
    assert decoder_cfg.num_feature_levels == "${..num_feature_levels}"
    swap_encoder(cfg, variant="H3L1-(2+1)x3", decoder_kda=True)  # a second swap does not wrap twice
    assert decoder_cfg["_target_"] is build_decoder_with_kda and decoder_cfg.decoder_class is DINOTransformerDecoder


@pytest.mark.usefixtures("fake_detectron2")
def test_swap_decoder_kda_instantiates():
    cfg = swap_encoder(dino_cfg(num_feature_levels=5), variant="H3L2-(2+1)x2", decoder_kda=True)
    decoder = tiny_instantiate(resolve(cfg)["model"]["transformer"]["decoder"])
    assert isinstance(decoder[0], KeyAwareDeformableAttention)
    assert decoder[0].num_levels == 5 and decoder[0].batch_first


@pytest.mark.usefixtures("fake_detectron2")
def test_resolve_follows_omegaconf_relative_interpolation():
    cfg = resolve(dino_cfg(num_feature_levels=5))
    assert cfg["model"]["transformer"]["encoder"]["num_feature_levels"] == 5
    assert cfg["model"]["transformer"]["decoder"]["num_feature_levels"] == 5
    assert cfg["model"]["transformer"]["two_stage_num_proposals"] == 900


@pytest.mark.usefixtures("fake_detectron2")
@pytest.mark.parametrize("cfg", [AttrDict(), AttrDict(model=AttrDict(_target_="DETR")),
                                 AttrDict(model=AttrDict(transformer=AttrDict(decoder=AttrDict())))])
def test_swap_rejects_configs_without_an_encoder(cfg):
    with pytest.raises(ValueError, match="cfg.model.transformer.encoder"):
        swap_encoder(cfg)


@pytest.mark.usefixtures("fake_detectron2")
def test_swap_bad_variant_fails_at_instantiation():
    cfg = swap_encoder(dino_cfg(), variant="H4L1-(2+1)x3")
    with pytest.raises(ValueError, match="describes 5 feature levels"):
        build_encoder(cfg)


# ------------------------------------------------------------------ use_kda_cross_attention


class TinyDecoderLayer(nn.Module):
    def __init__(self, cross_attn):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(32, 4, batch_first=True)
        self.cross_attn = cross_attn
        self.norm = nn.LayerNorm(32)


def test_use_kda_cross_attention_replaces_our_msda():
    decoder = nn.ModuleList([
        TinyDecoderLayer(MultiScaleDeformableAttention(embed_dim=32, num_heads=4, num_levels=5, num_points=3,
                                                       dropout=0.2, batch_first=True))
        for _ in range(2)
    ]).double()
    self_attn = decoder[0].self_attn
    result = use_kda_cross_attention(decoder, value_placement="samples", use_key_proj=True)
    assert result is decoder
    for layer in decoder:
        kda = layer.cross_attn
        assert isinstance(kda, KeyAwareDeformableAttention)
        assert (kda.embed_dim, kda.num_heads, kda.num_levels, kda.num_points) == (32, 4, 5, 3)
        assert kda.dropout.p == 0.2 and kda.batch_first and kda.value_placement == "samples"
        assert kda.key_proj is not None
        assert kda.value_proj.weight.dtype == torch.float64
    assert decoder[0].self_attn is self_attn
    assert decoder[0].cross_attn is not decoder[1].cross_attn


def test_use_kda_cross_attention_replaces_detrex_msda(monkeypatch):
    fake_msda = install_fake_detrex(monkeypatch)
    decoder = nn.ModuleList([TinyDecoderLayer(fake_msda(embed_dim=32, num_heads=4, num_levels=4, batch_first=True))])
    use_kda_cross_attention(decoder)
    kda = decoder[0].cross_attn
    assert isinstance(kda, KeyAwareDeformableAttention) and isinstance(kda, fake_msda)  # keeps detrex re-init
    assert not kda.sampling_offsets.weight.any()


def test_use_kda_cross_attention_without_deformable_attention():
    with pytest.raises(ValueError, match="no deformable attention"):
        use_kda_cross_attention(nn.Sequential(nn.Linear(2, 2)))


def test_use_kda_cross_attention_leaves_kda_alone():
    kda = KeyAwareDeformableAttention(embed_dim=32, num_heads=4)
    decoder = nn.ModuleList([TinyDecoderLayer(kda),
                             TinyDecoderLayer(MultiScaleDeformableAttention(embed_dim=32, num_heads=4))])
    use_kda_cross_attention(decoder)
    assert decoder[0].cross_attn is kda
    assert isinstance(decoder[1].cross_attn, KeyAwareDeformableAttention)
