"""Variant strings, impossible splits and bad options raise ValueError saying what is allowed."""
import pytest

from lite_detr_plugin import LiteEncoder, parse_variant
from lite_detr_plugin.encoders import PAPER_VARIANTS

SMALL = dict(embed_dim=32, num_heads=4, feedforward_dim=64)


@pytest.mark.parametrize("text,expected", [
    ("H3L1-(2+1)x3", (3, 1, 2, 3)),
    ("H2L2-(2+1)x3", (2, 2, 2, 3)),
    ("H3L1-(6+1)x1", (3, 1, 6, 1)),
    ("h3l1-(3+1)X2", (3, 1, 3, 2)),
    (" H3L2 - ( 2 + 1 ) × 2 ", (3, 2, 2, 2)),
])
def test_parse_variant(text, expected):
    variant = parse_variant(text)
    assert (variant.num_high_levels, variant.num_low_levels, variant.num_high_updates, variant.num_blocks) == expected
    assert variant.num_levels == expected[0] + expected[1]
    assert variant.num_layers == (expected[2] + 1) * expected[3]
    assert parse_variant(variant.name) == variant


def test_paper_variants_parse():
    assert {parse_variant(v).num_levels for v in PAPER_VARIANTS} == {4}


@pytest.mark.parametrize("text,match", [
    ("H3L1", r"HxLy-\(A\+1\)xB"),
    ("H3L1-(2+2)x3", r"HxLy-\(A\+1\)xB"),
    ("H3L1-(2+1)", r"HxLy-\(A\+1\)xB"),
    ("", r"HxLy-\(A\+1\)xB"),
    ("H0L4-(2+1)x3", r"num_high_levels \(H\) must be an integer >= 1"),
    ("H4L0-(2+1)x3", r"num_low_levels must be an integer >= 1"),
    ("H3L1-(0+1)x3", r"num_high_updates \(A\) must be an integer >= 1"),
    ("H3L1-(2+1)x0", r"num_blocks \(B\) must be an integer >= 1"),
])
def test_bad_variant_strings(text, match):
    with pytest.raises(ValueError, match=match):
        parse_variant(text)
    with pytest.raises(ValueError, match=match):
        LiteEncoder(**SMALL, variant=text)


def test_non_string_variant():
    with pytest.raises(ValueError, match="H3L1-\\(2\\+1\\)x3"):
        parse_variant(3)


def test_variant_with_more_levels_than_the_model():
    with pytest.raises(ValueError, match=r"describes 5 feature levels .* num_feature_levels=4"):
        LiteEncoder(**SMALL, variant="H4L1-(2+1)x3", num_feature_levels=4)
    with pytest.raises(ValueError, match=r"describes 4 feature levels .* num_feature_levels=5"):
        LiteEncoder(**SMALL, variant="H3L1-(2+1)x3", num_feature_levels=5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_high_levels=4), r"num_high_levels \(H\) must be between 1 and num_feature_levels - 1 = 3"),
    (dict(num_high_levels=0), r"num_high_levels \(H\) must be between 1"),
    (dict(num_high_updates=0), r"num_high_updates \(A\) must be an integer >= 1"),
    (dict(num_blocks=0), r"num_blocks \(B\) must be an integer >= 1"),
    (dict(num_feature_levels=1), r"at least 2 feature levels"),
    (dict(num_feature_levels="${..num_feature_levels}"), r"num_feature_levels must be a positive integer"),
    (dict(num_layers=6), r"num_layers=6 contradicts variant H3L1-\(2\+1\)x3.*9 layers"),
    (dict(variant="H3L1-(2+1)x3", num_layers=6), r"num_layers=6 contradicts"),
    (dict(variant="standard", num_layers=0), r"num_layers must be a positive integer"),
    (dict(attention="mha"), r"attention='mha' is unknown: .*registered: .*kda, msda"),
    (dict(low_query_mode="both"), r"low_query_mode must be 'released' or 'paper'"),
    (dict(value_placement="before"), r"value_placement must be one of .*tokens.*samples.*auto"),
    (dict(low_ffn_ratio=0), r"low_ffn_ratio"),
    (dict(low_ffn_ratio=1000), r"low_ffn_ratio"),
])
def test_impossible_configurations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LiteEncoder(**SMALL, **kwargs)


def test_num_layers_that_agrees_is_accepted():
    assert LiteEncoder(**SMALL, variant="H3L1-(2+1)x3", num_layers=9).num_layers == 9
    assert LiteEncoder(**SMALL, variant="standard", num_layers=3).num_layers == 3
    assert LiteEncoder(**SMALL, variant="STANDARD").variant == "standard"
