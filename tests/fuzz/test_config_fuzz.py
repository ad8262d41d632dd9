"""Fuzzing swap_encoder with malformed configs.

With detectron2 installed its LazyCall and OmegaConf configs are used; without
it, the stand-in LazyCall of tests/config/test_swap.py. Contract: swap_encoder
either edits a config that has ``model.transformer.encoder`` or raises a
ValueError that names what is wrong (never a TypeError / AttributeError).
"""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lite_detr_plugin import swap_encoder

from ..config.test_swap import AttrDict, install_fake_detectron2
from .budget import budget


@pytest.fixture(scope="module", autouse=True)
def lazy_call():
    try:
        import detectron2.config  # noqa: F401

        yield
        return
    except ImportError:
        pass
    with pytest.MonkeyPatch.context() as patch:
        install_fake_detectron2(patch)
        yield


LEAF = st.one_of(st.none(), st.integers(-2, 3), st.text(max_size=4), st.booleans(), st.lists(st.integers(), max_size=2))
ENCODER = st.builds(lambda extra: AttrDict(_target_="detrex.DINOTransformerEncoder", embed_dim=256, num_heads=8,
                                           **extra),
                    st.dictionaries(st.sampled_from(["feedforward_dim", "post_norm", "num_layers"]), LEAF, max_size=2))


def node(children):
    return st.builds(AttrDict, st.dictionaries(st.sampled_from(list(children)), st.one_of(*children.values()),
                                               max_size=len(children)))


TRANSFORMER = node({"encoder": st.one_of(ENCODER, LEAF), "decoder": st.one_of(LEAF, ENCODER)})
MODEL = node({"transformer": st.one_of(TRANSFORMER, LEAF), "num_queries": LEAF})
CONFIGS = st.one_of(LEAF, node({"model": st.one_of(MODEL, LEAF), "train": LEAF}))


@budget(200)
@given(CONFIGS, st.booleans(), st.sampled_from(["kda", "msda", "bogus"]))
def test_swap_encoder_on_malformed_configs(cfg, decoder_kda, attention):
    try:
        swap_encoder(cfg, decoder_kda=decoder_kda, attention=attention)
    except ValueError as exc:
        message = str(exc)
        assert any(word in message for word in ("cfg", "model", "transformer", "encoder", "decoder", "attention")), message
        return
    assert attention != "bogus"
    encoder = cfg["model"]["transformer"]["encoder"]
    assert encoder["variant"] == "H3L1-(2+1)x3" and encoder["attention"] == attention
    assert encoder["num_feature_levels"] == "${..num_feature_levels}"
