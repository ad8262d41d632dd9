"""Our attentions keep their initialisation when a detrex transformer re-initialises its encoder.

detrex's transformers xavier-init every >1-D parameter, then call ``init_weights()``
on every ``detrex.layers.MultiScaleDeformableAttention`` instance (contract, pitfall 2).
Without installing detrex, a fake ``detrex.layers`` module stands in for it.
"""
import copy
import math
import pickle
import sys
import types

import pytest
import torch
from torch import nn

from lite_detr_plugin import LiteEncoder
from lite_detr_plugin.layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from lite_detr_plugin.layers._detrex_compat import detrex_attention_class
from tests.encoders.helpers import make_inputs

from .test_attention import detrex_offset_bias
from ..helpers.fake_detrex import detrex_transformer_init, hide_detrex, install_fake_detrex

SMALL = dict(embed_dim=32, num_heads=4, feedforward_dim=64, num_points=2, attn_dropout=0.0, ffn_dropout=0.0)


@pytest.fixture
def fake_msda(monkeypatch):
    return install_fake_detrex(monkeypatch)


@pytest.fixture
def no_detrex(monkeypatch):
    """As if detrex were not imported (in a detrex environment too)."""
    hide_detrex(monkeypatch)


def assert_attention_init(attn):
    assert not attn.sampling_offsets.weight.any(), "sampling_offsets.weight must be zero"
    torch.testing.assert_close(attn.sampling_offsets.bias.float(),
                               detrex_offset_bias(attn.num_heads, attn.num_levels, attn.num_points),
                               atol=1e-6, rtol=0)
    if isinstance(attn, MultiScaleDeformableAttention):
        assert not attn.attention_weights.weight.any() and not attn.attention_weights.bias.any()
    for name in ("value_proj", "output_proj", "query_proj", "key_proj"):
        linear = getattr(attn, name, None)
        if linear is not None:
            assert not linear.bias.any(), name


@pytest.mark.parametrize("cls", [KeyAwareDeformableAttention, MultiScaleDeformableAttention])
def test_instances_are_detrex_msda(fake_msda, cls):
    attn = cls(embed_dim=32, num_heads=4, num_levels=4, num_points=2)
    assert isinstance(attn, fake_msda) and isinstance(attn, cls)
    assert fake_msda.constructed == 0, "detrex's constructor must not run"
    assert type(attn).__name__ == cls.__name__
    assert_attention_init(attn)


@pytest.mark.parametrize("attention", ["kda", "msda"])
def test_init_survives_detrex_reinit(fake_msda, attention):
    encoder = LiteEncoder(**SMALL, variant="H3L1-(2+1)x3", attention=attention, use_key_proj=False)
    transformer = nn.Module()  # stands for DINOTransformer, which owns the encoder
    transformer.encoder = encoder
    transformer.level_embeds = nn.Parameter(torch.zeros(4, 32))
    detrex_transformer_init(transformer, fake_msda)
    attentions = [layer.self_attn for layer in encoder.layers]
    assert len(attentions) == 9 and all(isinstance(a, fake_msda) for a in attentions)
    for attn in attentions:
        assert_attention_init(attn)
    # xavier did reach the rest of the encoder
    assert encoder.layers[0].ffn.fc1.weight.abs().max() <= math.sqrt(6 / (32 + 64))


def test_without_the_compat_base_the_init_would_be_lost(no_detrex):
    """What the mechanism prevents: a plain module loses its zero offsets to the xavier pass."""
    stand_in = type("MultiScaleDeformableAttention", (nn.Module,), {})
    encoder = LiteEncoder(**SMALL, variant="H3L1-(2+1)x3")
    detrex_transformer_init(encoder, stand_in)
    assert encoder.layers[0].self_attn.sampling_offsets.weight.any()


def test_no_detrex_base_without_detrex(no_detrex):
    assert detrex_attention_class() is None
    for cls in (KeyAwareDeformableAttention, MultiScaleDeformableAttention):
        attn = cls(embed_dim=32, num_heads=4)
        assert type(attn) is cls
        assert [c.__module__.split(".")[0] for c in type(attn).__mro__].count("detrex") == 0


def test_broken_detrex_is_ignored(monkeypatch):
    """detrex imported but `detrex.layers` unusable: our modules still build, without the base."""
    broken = types.ModuleType("detrex")
    broken.__path__ = []
    monkeypatch.setitem(sys.modules, "detrex", broken)
    monkeypatch.setitem(sys.modules, "detrex.layers", None)  # import raises ImportError
    assert detrex_attention_class() is None
    assert type(KeyAwareDeformableAttention(embed_dim=32, num_heads=4)) is KeyAwareDeformableAttention


@pytest.mark.parametrize("attention", ["kda", "msda"])
def test_compat_instances_compute_the_same(fake_msda, monkeypatch, attention):
    with_base = LiteEncoder(**SMALL, variant="H3L1-(2+1)x3", attention=attention).double().eval()
    monkeypatch.delitem(sys.modules, "detrex")
    monkeypatch.delitem(sys.modules, "detrex.layers")
    plain = LiteEncoder(**SMALL, variant="H3L1-(2+1)x3", attention=attention).double().eval()
    assert not isinstance(plain.layers[0].self_attn, fake_msda)
    plain.load_state_dict(with_base.state_dict())
    inputs = make_inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(with_base(**inputs), plain(**inputs), atol=0, rtol=0)


def test_deepcopy_with_detrex_base(fake_msda):
    encoder = LiteEncoder(**SMALL, variant="H3L1-(2+1)x3").double().eval()
    clone = copy.deepcopy(encoder)
    attn = clone.layers[0].self_attn
    assert isinstance(attn, fake_msda) and isinstance(attn, KeyAwareDeformableAttention)
    assert attn is not encoder.layers[0].self_attn
    inputs = make_inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(clone(**inputs), encoder(**inputs), atol=0, rtol=0)


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_pickle_with_detrex_base(fake_msda, protocol):
    encoder = LiteEncoder(**SMALL, variant="H3L1-(2+1)x3").double().eval()
    restored = pickle.loads(pickle.dumps(encoder, protocol=protocol))
    attn = restored.layers[0].self_attn
    assert isinstance(attn, fake_msda) and isinstance(attn, KeyAwareDeformableAttention)
    inputs = make_inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(restored(**inputs), encoder(**inputs), atol=0, rtol=0)


def test_pickle_made_with_detrex_loads_without_it(fake_msda, monkeypatch):
    data = pickle.dumps(KeyAwareDeformableAttention(embed_dim=32, num_heads=4))
    monkeypatch.delitem(sys.modules, "detrex")
    monkeypatch.delitem(sys.modules, "detrex.layers")
    assert type(pickle.loads(data)) is KeyAwareDeformableAttention
