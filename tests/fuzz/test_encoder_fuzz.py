"""Fuzzing parse_variant and LiteEncoder(...) with random strings and keyword sets.

Contract: a variant string either parses to the numbers it spells or raises
ValueError naming ``variant``; LiteEncoder either builds (and then runs a forward
and backward pass on detrex-shaped inputs with finite outputs) or raises
ValueError/RuntimeError naming one of the keywords it was given.
"""
import re

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from lite_detr_plugin.encoders import LiteEncoder, parse_variant
from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs

from .budget import budget

VARIANT_CHARS = "HLhl0123456789-()+x× ,.;_a"


@budget(300)
@given(st.one_of(st.text(alphabet=VARIANT_CHARS, max_size=20), st.text(max_size=12)))
def test_parse_variant_on_random_text(text):
    try:
        parsed = parse_variant(text)
    except ValueError as exc:
        assert "variant" in str(exc) or "must be an integer" in str(exc), str(exc)
        return
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    assert numbers == [parsed.num_high_levels, parsed.num_low_levels, parsed.num_high_updates, 1, parsed.num_blocks]
    assert parse_variant(parsed.name) == parsed  # the canonical name round-trips


@budget(100)
@given(st.integers(0, 12), st.integers(0, 12), st.integers(0, 12), st.integers(0, 12), st.sampled_from(["x", "×", "X"]),
       st.sampled_from(["", " ", "  "]))
def test_parse_variant_on_near_valid_strings(h, low, a, b, times, space):
    text = f"{space}H{h}{space}L{low}-({a}+1){space}{times}{b}{space}"
    if min(h, low, a, b) < 1:
        with pytest.raises(ValueError, match=r"must be an integer >= 1"):
            parse_variant(text)
    else:
        assert (lambda v: (v.num_high_levels, v.num_low_levels, v.num_high_updates, v.num_blocks))(parse_variant(text)) == (h, low, a, b)


@budget(60)
@given(st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=4), st.lists(st.integers(), max_size=3)))
def test_parse_variant_on_non_strings(value):
    with pytest.raises(ValueError, match="variant must be a string"):
        parse_variant(value)


VALID = {
    "embed_dim": st.sampled_from([8, 16, 24]),
    "num_heads": st.sampled_from([1, 2, 4]),
    "feedforward_dim": st.sampled_from([8, 16, 32]),
    "attn_dropout": st.sampled_from([0.0, 0.1]),
    "ffn_dropout": st.sampled_from([0.0, 0.1, 1]),
    "post_norm": st.booleans(),
    "num_feature_levels": st.integers(2, 5),
    "use_checkpoint": st.booleans(),
    "variant": st.sampled_from(["H3L1-(2+1)x1", "H2L2-(1+1)x2", "H1L1-(1+1)x1", "standard", "h2l3-(1+1)x1",
                                "H3L1-(2+1)x3 ", "Standard", None]),
    "num_high_levels": st.integers(1, 4),
    "num_high_updates": st.integers(1, 3),
    "num_blocks": st.integers(1, 2),
    "attention": st.sampled_from(["kda", "msda", "KeyAwareDeformableAttention"]),
    "low_ffn_ratio": st.sampled_from([1, 2, 8]),
    "low_query_mode": st.sampled_from(["released", "paper"]),
    "value_placement": st.sampled_from(["auto", "tokens", "samples", "output"]),
    "num_points": st.integers(1, 4),
    "use_key_proj": st.booleans(),
}
ODD = st.one_of(st.none(), st.integers(-3, 0), st.floats(-2, 2), st.just(float("nan")),
                st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2))


@st.composite
def keyword_sets(draw, odd_keywords):
    """Valid LiteEncoder keywords (some left out), ``odd_keywords`` of them replaced by odd values."""
    kwargs = draw(st.fixed_dictionaries({}, optional=VALID))
    kwargs.setdefault("embed_dim", 16)  # keep the default widths small: the encoder is built for real
    kwargs.setdefault("num_heads", 2)
    kwargs.setdefault("feedforward_dim", 16)
    for name in draw(st.lists(st.sampled_from(sorted(VALID) + ["num_layers"]), min_size=odd_keywords,
                              max_size=odd_keywords, unique=True)):
        kwargs[name] = draw(ODD)
    return kwargs


def build_and_run_or_refuse(kwargs):
    try:
        encoder = LiteEncoder(**kwargs)
    except (ValueError, RuntimeError) as exc:
        message = str(exc)
        named = [k for k in kwargs if k in message] + [k for k in ("variant", "(H)", "(A)", "(B)") if k in message]
        assert named, f"the refusal names none of {sorted(kwargs)}: {message}"
        event("refused")
        return
    event("built")
    encoder.train()
    levels = encoder.num_feature_levels
    inputs = detrex_encoder_kwargs([(40, 48), (32, 40)], num_levels=levels, embed_dim=encoder.embed_dim,
                                   requires_grad=True)
    out = encoder(**inputs)
    assert out.shape == inputs["query"].shape
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert torch.isfinite(inputs["query"].grad).all()


@budget(80)
@given(keyword_sets(odd_keywords=0))
def test_lite_encoder_on_random_valid_keywords(kwargs):
    """Valid values can still conflict (a variant for other levels, H >= levels): refused by name."""
    build_and_run_or_refuse(kwargs)


@budget(100)
@given(keyword_sets(odd_keywords=1))
def test_lite_encoder_on_one_odd_keyword(kwargs):
    build_and_run_or_refuse(kwargs)
