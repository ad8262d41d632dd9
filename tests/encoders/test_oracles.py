"""LiteEncoder against independent plain-PyTorch oracles (see oracles.py), sharing its weights.

The key correctness tests of the encoder: the "released" mode must compute the
public Lite-DETR encoder loop, the "paper" mode Lite DETR eq. (1)/(2), and the
standard configuration detrex's deformable encoder, for every placement of the
value projection, on detrex-shaped padded inputs with 4 and 5 levels.
"""
import pytest
import torch

from .helpers import IMAGES, PAPER_VARIANTS_4, VARIANTS_5, load_shared, make_encoder, make_inputs
from .oracles import paper_encoder, released_encoder, standard_encoder

# float64 throughout: both attentions match to rounding.
TOL = {"kda": 1e-10, "msda": 1e-10}


def run_oracle(encoder, inputs, mode):
    lite = encoder.lite
    args = (encoder, inputs["query"], inputs["query_pos"], inputs["query_key_padding_mask"], inputs["spatial_shapes"])
    if mode == "released":
        return released_encoder(*args, inputs["valid_ratios"], lite.num_high_levels, lite.num_blocks)
    return paper_encoder(*args, inputs["reference_points"], lite.num_high_levels, lite.num_high_updates,
                         lite.num_blocks)


def assert_matches(out, expected, tol):
    assert out.shape == expected.shape
    err = (out - expected).abs().max().item()
    assert err <= tol, f"max |encoder - oracle| = {err:.3g} > {tol:.1g}"


@pytest.mark.parametrize("attention", ["kda", "msda"])
@pytest.mark.parametrize("mode", ["released", "paper"])
@pytest.mark.parametrize("variant", PAPER_VARIANTS_4 + VARIANTS_5)
def test_matches_oracle(variant, mode, attention):
    encoder = make_encoder(variant, low_query_mode=mode, attention=attention)
    inputs = make_inputs(encoder.num_feature_levels)
    with torch.no_grad():
        out = encoder(**inputs)
        expected = run_oracle(encoder, inputs, mode)
    assert_matches(out, expected, TOL[attention])


@pytest.mark.parametrize("placement", ["tokens", "samples", "auto"])
@pytest.mark.parametrize("attention,use_key_proj", [("kda", False), ("kda", True), ("msda", False)])
@pytest.mark.parametrize("mode", ["released", "paper"])
@pytest.mark.parametrize("variant", ["H3L1-(2+1)x3", "H3L2-(2+1)x2"])
def test_matches_oracle_every_placement(variant, mode, attention, use_key_proj, placement):
    extra = {"use_key_proj": True} if use_key_proj else {}
    encoder = make_encoder(variant, low_query_mode=mode, attention=attention, value_placement=placement, **extra)
    inputs = make_inputs(encoder.num_feature_levels)
    with torch.no_grad():
        out = encoder(**inputs)
        expected = run_oracle(encoder, inputs, mode)
    assert_matches(out, expected, TOL[attention])


@pytest.mark.parametrize("mode", ["released", "paper"])
def test_matches_oracle_post_norm_three_images_one_unpadded(mode):
    encoder = make_encoder("H2L2-(2+1)x3", low_query_mode=mode, post_norm=True)
    assert encoder.post_norm_layer is not None
    inputs = make_inputs(4, images=((64, 96), (40, 64), (64, 50)), seed=3)
    with torch.no_grad():
        out = encoder(**inputs)
        expected = run_oracle(encoder, inputs, mode)
    assert_matches(out, expected, TOL["kda"])


@pytest.mark.parametrize("mode", ["released", "paper"])
def test_matches_oracle_float32(mode):
    encoder = make_encoder("H3L1-(2+1)x3", low_query_mode=mode, dtype=torch.float32)
    inputs = make_inputs(4, dtype=torch.float32)
    with torch.no_grad():
        out = encoder(**inputs)
        expected = run_oracle(encoder, inputs, mode)
    assert out.dtype == torch.float32
    assert_matches(out, expected, 1e-4)


@pytest.mark.parametrize("placement", ["tokens", "samples"])
@pytest.mark.parametrize("attention", ["msda", "kda"])
@pytest.mark.parametrize("num_levels", [4, 5])
def test_standard_matches_detrex_encoder_loop(num_levels, attention, placement):
    encoder = make_encoder("standard", num_levels=num_levels, num_layers=3, attention=attention,
                           value_placement=placement)
    assert len(encoder.layers) == 3
    inputs = make_inputs(num_levels)
    with torch.no_grad():
        out = encoder(**inputs)
        expected = standard_encoder(encoder, inputs["query"], inputs["query_pos"], inputs["query_key_padding_mask"],
                                    inputs["spatial_shapes"], inputs["reference_points"])
    assert_matches(out, expected, TOL[attention])


def test_msda_float64_precision():
    """Regression: MSDA once took its softmax in float32 whatever the input dtype (~1e-7 off in float64)."""
    encoder = make_encoder("H3L1-(2+1)x3", low_query_mode="paper", attention="msda")
    inputs = make_inputs(4)
    with torch.no_grad():
        out = encoder(**inputs)
        expected = run_oracle(encoder, inputs, "paper")
    assert_matches(out, expected, 1e-10)


# ----------------------------------------------------------- oracle sensitivity
# The oracles tell the modes and splits apart: an encoder that computed the other
# mode, or split the levels elsewhere, would fail the tests above.


def test_released_and_paper_modes_differ():
    released = make_encoder("H3L1-(2+1)x3", low_query_mode="released")
    paper = load_shared(make_encoder("H3L1-(2+1)x3", low_query_mode="paper"), released)
    inputs = make_inputs(4)
    with torch.no_grad():
        out_released, out_paper = released(**inputs), paper(**inputs)
        assert (out_released - run_oracle(paper, inputs, "paper")).abs().max() > 1e-2
        assert (out_paper - run_oracle(released, inputs, "released")).abs().max() > 1e-2
    assert (out_released - out_paper).abs().max() > 1e-2


def test_oracle_detects_a_wrong_split():
    encoder = make_encoder("H3L1-(2+1)x3", low_query_mode="paper")
    inputs = make_inputs(4)
    with torch.no_grad():
        out = encoder(**inputs)
        wrong = paper_encoder(encoder, inputs["query"], inputs["query_pos"], inputs["query_key_padding_mask"],
                              inputs["spatial_shapes"], inputs["reference_points"], 2, 2, 3)
    assert (out - wrong).abs().max() > 1e-2


def test_inputs_are_not_modified():
    encoder = make_encoder("H3L1-(2+1)x3", low_query_mode="released")
    inputs = make_inputs(4)
    before = {k: v.clone() for k, v in inputs.items() if v is not None}
    with torch.no_grad():
        encoder(**inputs)
    for name, value in before.items():
        assert torch.equal(inputs[name], value), name


def test_default_images_are_padded():
    inputs = make_inputs(4, images=IMAGES)
    mask = inputs["query_key_padding_mask"]
    assert not mask[0].any() and mask[1].any() and not mask[1].all()
