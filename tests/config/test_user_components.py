"""A user's attention, registered by name, selected by LiteEncoder, swap_encoder,
use_kda_cross_attention and a detectron2 LazyConfig."""
import copy
import importlib
import io
import pickle
import sys

import pytest
import torch
from torch import nn

from lite_detr_plugin import ATTENTION_REGISTRY, ENCODER_REGISTRY, LiteEncoder, swap_encoder, use_kda_cross_attention
from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs
from lite_detr_plugin.layers import KeyAwareDeformableAttention, MultiScaleDeformableAttention
from lite_detr_plugin.registry import ComponentRegistry, UnknownComponentError

from .test_swap import TinyDecoderLayer, build_encoder, dino_cfg, fake_detectron2  # noqa: F401 (a fixture)

USER_MODULE = "tests.config.user_attention"
SMALL = dict(embed_dim=32, num_heads=4, feedforward_dim=64, attn_dropout=0.0, ffn_dropout=0.0)


@pytest.fixture
def user_attention():
    """Imports the user's module (its decorator registers the class) and undoes it afterwards."""
    sys.modules.pop(USER_MODULE, None)
    module = importlib.import_module(USER_MODULE)
    yield module
    if module.NAME in ATTENTION_REGISTRY:
        ATTENTION_REGISTRY.unregister(module.NAME)
    sys.modules.pop(USER_MODULE, None)


def layer_by_hand(layer, query, value, query_pos, mask):
    """A standard encoder layer written out: attention + residual, norm1, FFN + residual, norm2."""
    out, _ = layer.self_attn.attn(query + query_pos, value, value, key_padding_mask=mask, need_weights=False)
    x = layer.norm1(query + out)
    return layer.norm2(x + layer.ffn.fc2(torch.relu(layer.ffn.fc1(x))))


def test_registered_by_decorator_under_name_and_alias(user_attention):
    cls = user_attention.DenseTokenAttention
    assert ATTENTION_REGISTRY.get("dense_tokens") is cls
    assert ATTENTION_REGISTRY.get("DenseTokenAttention") is cls
    assert ATTENTION_REGISTRY.short_name(cls) == "dense_tokens"
    assert ATTENTION_REGISTRY.get("kda") is KeyAwareDeformableAttention
    assert ATTENTION_REGISTRY.get("msda") is MultiScaleDeformableAttention


def test_lite_encoder_builds_the_user_attention_and_calls_it_like_detrex(user_attention):
    encoder = LiteEncoder(**SMALL, variant="H3L1-(2+1)x2", attention="dense_tokens").eval()
    assert encoder.attention == "dense_tokens"
    assert all(type(layer.self_attn) is user_attention.DenseTokenAttention for layer in encoder.layers)
    assert all(layer.self_attn.batch_first and layer.self_attn.num_levels == 4 for layer in encoder.layers)
    inputs = detrex_encoder_kwargs(canvas=(64, 96), embed_dim=32, seed=1)
    with torch.no_grad():
        out = encoder(**inputs)
    total = inputs["query"].shape[1]
    num_low = int(inputs["level_start_index"][1])  # H3L1: level 0 is the low level
    # per block: two high-level updates (high queries, all values), then every token queries (released)
    assert [c for layer in encoder.layers for c in layer.self_attn.calls] == [
        (total - num_low, total), (total - num_low, total), (total, total)] * 2
    assert out.shape == inputs["query"].shape and torch.isfinite(out).all()


def test_standard_encoder_with_user_attention_matches_the_layer_by_hand(user_attention):
    encoder = LiteEncoder(**SMALL, variant="standard", num_layers=2, attention="dense_tokens").eval()
    inputs = detrex_encoder_kwargs([(64, 96), (48, 80)], embed_dim=32, seed=2)
    with torch.no_grad():
        got = encoder(**inputs)
        x = inputs["query"]
        for layer in encoder.layers:
            x = layer_by_hand(layer, x, x, inputs["query_pos"], inputs["query_key_padding_mask"])
    torch.testing.assert_close(got, x, atol=1e-5, rtol=0)


def test_deepcopy_and_pickle_keep_the_user_attention(user_attention):
    encoder = LiteEncoder(**SMALL, variant="H2L2-(2+1)x1", attention="dense_tokens").eval()
    inputs = detrex_encoder_kwargs(canvas=(64, 64), embed_dim=32)
    buffer = io.BytesIO()
    torch.save(encoder, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(encoder), pickle.loads(pickle.dumps(encoder)),
                  torch.load(buffer, weights_only=False)):
        assert type(clone.layers[0].self_attn) is user_attention.DenseTokenAttention
        with torch.no_grad():
            torch.testing.assert_close(clone(**inputs), encoder(**inputs), atol=0, rtol=0)


def test_options_the_user_attention_does_not_take(user_attention):
    LiteEncoder(**SMALL, attention="dense_tokens", value_placement="auto", use_key_proj=False)  # defaults: dropped
    with pytest.raises(ValueError, match="does not take value_placement='samples'"):
        LiteEncoder(**SMALL, attention="dense_tokens", value_placement="samples")
    with pytest.raises(ValueError, match="does not take use_key_proj=True"):
        LiteEncoder(**SMALL, attention="dense_tokens", use_key_proj=True)
    with pytest.raises(ValueError, match="'msda'.*does not take use_key_proj=True"):
        LiteEncoder(**SMALL, attention="msda", use_key_proj=True)


def test_unknown_names_list_the_registered_ones(user_attention):
    with pytest.raises(ValueError, match=r"attention='dense' is unknown: .*registered: .*dense_tokens.*kda, msda"):
        LiteEncoder(**SMALL, attention="dense")
    with pytest.raises(ValueError) as error:
        ATTENTION_REGISTRY.get("dense")
    assert isinstance(error.value, KeyError) and isinstance(error.value, UnknownComponentError)
    with pytest.raises(ValueError, match="registered: LiteEncoder"):
        ENCODER_REGISTRY.get("DINOTransformerEncoder")


def test_use_kda_cross_attention_with_a_user_attention(user_attention):
    decoder = nn.ModuleList([TinyDecoderLayer(MultiScaleDeformableAttention(embed_dim=32, num_heads=4, num_levels=3,
                                                                           dropout=0.2, batch_first=True))])
    use_kda_cross_attention(decoder, attention="dense_tokens")
    attn = decoder[0].cross_attn
    assert type(attn) is user_attention.DenseTokenAttention
    assert (attn.embed_dim, attn.num_heads, attn.num_levels, attn.dropout.p, attn.batch_first) == (32, 4, 3, 0.2, True)
    with pytest.raises(ValueError, match="attention='nope' is unknown"):
        use_kda_cross_attention(decoder, attention="nope")


@pytest.mark.usefixtures("fake_detectron2")
def test_swap_encoder_selects_by_name(user_attention):
    cfg = swap_encoder(dino_cfg(), variant="H3L1-(2+1)x3", attention="DenseTokenAttention")
    assert cfg.model.transformer.encoder.attention == "dense_tokens"  # the config keeps a (short) name
    encoder = build_encoder(cfg)
    assert type(encoder.layers[0].self_attn) is user_attention.DenseTokenAttention
    with pytest.raises(ValueError, match="attention='dense' is unknown"):
        swap_encoder(dino_cfg(), attention="dense")
    with pytest.raises(ValueError, match="encoder='Nope' is unknown: .*registered: LiteEncoder"):
        swap_encoder(dino_cfg(), encoder="Nope")


def test_registry_refuses_a_taken_name_and_accepts_a_reload():
    registry = ComponentRegistry("TEST_REGISTRY")

    @registry.register(aliases=("a",))
    class First(nn.Module):
        pass

    class Other(nn.Module):
        pass

    with pytest.raises(ValueError, match="'a' is already taken"):
        registry.register(Other, aliases=("a",))
    with pytest.raises(ValueError, match="'First' is already taken"):
        registry.register(Other, name="First")
    assert "Other" not in registry  # a refused registration leaves nothing behind
    reloaded = type("First", (nn.Module,), {"__module__": First.__module__, "__qualname__": First.__qualname__})
    registry.register(reloaded, aliases=("a",))  # the same module and name again: a reloaded module
    assert registry.get("a") is reloaded and [name for name, _ in registry] == ["First"]
    assert registry.unregister("a") is reloaded and registry.names() == []
    with pytest.raises(ValueError, match="no component named 'a'"):
        registry.unregister("a")


@pytest.mark.detrex
def test_user_attention_from_a_lazyconfig_file(user_attention, tmp_path):
    from detectron2.config import LazyConfig, instantiate

    config = tmp_path / "user_attention_cfg.py"
    config.write_text(
        "from detectron2.config import LazyCall as L\n"
        "from omegaconf import OmegaConf\n"
        "import tests.config.user_attention  # registers 'dense_tokens'\n"
        "from lite_detr_plugin import swap_encoder\n"
        "model = OmegaConf.create()\n"
        "model.transformer = dict(num_feature_levels=4, encoder=dict(embed_dim=32, num_heads=4, feedforward_dim=64,\n"
        "                         num_layers=6, attn_dropout=0.0, ffn_dropout=0.0))\n"
        "model = OmegaConf.create({'model': model})\n"
        "swap_encoder(model, variant='H3L1-(2+1)x3', attention='dense_tokens')\n"
        "model = model.model\n"
    )
    cfg = LazyConfig.load(str(config))
    assert cfg.model.transformer.encoder.attention == "dense_tokens"
    encoder = instantiate(cfg.model.transformer.encoder)
    assert isinstance(encoder, LiteEncoder) and encoder.attention == "dense_tokens"
    assert type(encoder.layers[0].self_attn).__name__ == "DenseTokenAttention"
    # a saved config names the attention by its registered name and builds it again after loading
    saved = tmp_path / "saved.yaml"
    LazyConfig.save(cfg, str(saved))
    loaded = LazyConfig.load(str(saved))
    rebuilt = instantiate(loaded.model.transformer.encoder)
    assert type(rebuilt.layers[-1].self_attn).__name__ == "DenseTokenAttention"
    # an override on the command line picks another registered attention
    overridden = LazyConfig.apply_overrides(LazyConfig.load(str(config)), ["model.transformer.encoder.attention=msda"])
    assert isinstance(instantiate(overridden.model.transformer.encoder).layers[0].self_attn,
                      MultiScaleDeformableAttention)
