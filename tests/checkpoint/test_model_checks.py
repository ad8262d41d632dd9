"""lite_detr_plugin.checkpoint.detrex_target's checks of a built model, on stand-in models (no detrex)."""
from types import SimpleNamespace

from torch import nn

from lite_detr_plugin import KeyAwareDeformableAttention, LiteEncoder, MultiScaleDeformableAttention
from lite_detr_plugin.checkpoint.detrex_target import check_model, position_embedding_warnings


def _model(variant="H3L1-(2+1)x3", attention="kda", low_query_mode="released", decoder_attention=None,
           temperature=20, offset=0.0):
    model = nn.Module()
    model.transformer = nn.Module()
    model.transformer.encoder = LiteEncoder(variant=variant, feedforward_dim=2048, attention=attention,
                                            low_query_mode=low_query_mode)
    model.transformer.decoder = nn.Module()
    model.transformer.decoder.cross = (decoder_attention or KeyAwareDeformableAttention)(batch_first=True)
    model.position_embedding = SimpleNamespace(temperature=temperature, offset=offset, normalize=True)
    return model


def test_matching_model_passes():
    model = _model()
    assert check_model(model, "H3L1-(2+1)x3") == []
    assert position_embedding_warnings(model) == []


def test_each_semantic_difference_is_named():
    assert "H3L1-(2+1)x3, the checkpoint's H2L2-(2+1)x3" in check_model(_model(), "H2L2-(2+1)x3")[0]
    assert "low_query_mode='paper'" in check_model(_model(low_query_mode="paper"), "H3L1-(2+1)x3")[0]
    problems = check_model(_model(attention="msda", decoder_attention=MultiScaleDeformableAttention), "H3L1-(2+1)x3")
    assert any("'msda'" in p for p in problems) and any("not KDA" in p for p in problems)
    no_lite = nn.Module()
    assert "no LiteEncoder" in check_model(no_lite, "H3L1-(2+1)x3")[0]


def test_position_embedding_of_the_12ep_config_is_flagged():
    warnings = position_embedding_warnings(_model(temperature=10000, offset=-0.5))
    assert len(warnings) == 1 and "temperature=20" in warnings[0]
