"""lite_detr_plugin.encoders.inputs: detrex-shaped encoder inputs (checked against detrex itself in tests/detrex)."""
import math

import pytest
import torch

from lite_detr_plugin.encoders.inputs import (
    COCO_800x1333_SHAPES,
    detrex_encoder_kwargs,
    feature_shapes,
    image_masks,
    level_masks,
    num_tokens,
    valid_ratios,
)

from .oracles import reference_points_from_ratios

DETREX_CALL_KEYS = ["query", "key", "value", "query_pos", "query_key_padding_mask", "spatial_shapes",
                    "reference_points", "level_start_index", "valid_ratios"]


def test_coco_800x1333_shapes():
    assert feature_shapes(800, 1333) == list(COCO_800x1333_SHAPES) == [(100, 167), (50, 84), (25, 42), (13, 21)]
    assert num_tokens(COCO_800x1333_SHAPES) == 22223
    assert feature_shapes(800, 1333, num_levels=5) == [(200, 334)] + list(COCO_800x1333_SHAPES)


def test_resnet_ceil_halving():
    # ResNet's stride-2 convs (kernel 3 / 7, padding 1 / 3) and the 3x3 stride-2 extra conv map s to ceil(s/2)
    conv = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1)
    for h, w in [(97, 131), (64, 96), (33, 1)]:
        x = torch.zeros(1, 1, h, w)
        sizes = []
        for _ in range(6):
            x = conv(x)
            sizes.append(tuple(x.shape[-2:]))
        assert feature_shapes(h, w, 4) == sizes[2:]


@pytest.mark.parametrize("bs", [1, 2, 3])
@pytest.mark.parametrize("num_levels", [4, 5])
def test_call_keywords_shapes_and_dtypes(bs, num_levels):
    images = [(64, 96), (40, 64), (64, 50)][:bs]
    kwargs = detrex_encoder_kwargs(images, num_levels=num_levels, embed_dim=32)
    assert list(kwargs) == DETREX_CALL_KEYS
    shapes = feature_shapes(64, 96, num_levels)
    N = num_tokens(shapes)
    assert kwargs["key"] is None and kwargs["value"] is None
    assert kwargs["query"].shape == kwargs["query_pos"].shape == (bs, N, 32)
    assert kwargs["query"].dtype == kwargs["query_pos"].dtype == torch.float32
    assert kwargs["query_key_padding_mask"].shape == (bs, N) and kwargs["query_key_padding_mask"].dtype == torch.bool
    assert kwargs["spatial_shapes"].tolist() == [list(s) for s in shapes]
    assert kwargs["spatial_shapes"].dtype == kwargs["level_start_index"].dtype == torch.int64
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    assert kwargs["level_start_index"].tolist() == starts
    assert kwargs["reference_points"].shape == (bs, N, num_levels, 2)
    assert kwargs["reference_points"].dtype == torch.float32
    assert kwargs["valid_ratios"].shape == (bs, num_levels, 2)


def test_padding_masks_and_valid_ratios():
    img = image_masks([(64, 96), (40, 64)])
    assert not img[0].any()
    assert not img[1, :40, :64].any() and img[1, 40:].all() and img[1, :, 64:].all()
    masks = level_masks(img, feature_shapes(64, 96))
    ratios = valid_ratios(masks)
    # (w, h) order: image 1 keeps 64/96 of the width and 40/64 of the height at stride 8
    assert torch.allclose(ratios[1, 0], torch.tensor([8 / 12, 5 / 8]))
    assert torch.equal(ratios[0], torch.ones(4, 2))
    kwargs = detrex_encoder_kwargs([(64, 96), (40, 64)], embed_dim=32)
    flat = torch.cat([m.flatten(1) for m in masks], 1)
    assert torch.equal(kwargs["query_key_padding_mask"], flat)


def test_reference_points_follow_the_definition():
    kwargs = detrex_encoder_kwargs([(64, 96), (40, 64), (48, 96)], embed_dim=32)
    shapes = [tuple(s) for s in kwargs["spatial_shapes"].tolist()]
    expected = reference_points_from_ratios(shapes, kwargs["valid_ratios"])
    torch.testing.assert_close(kwargs["reference_points"], expected, atol=0, rtol=0)
    # the first pixel of level 0 of an unpadded image: its centre, in every level's frame
    assert torch.allclose(kwargs["reference_points"][0, 0], torch.tensor([0.5 / 12, 0.5 / 8]).expand(4, 2))


def test_sine_position_embedding_of_unpadded_image():
    kwargs = detrex_encoder_kwargs([(64, 96)], embed_dim=32, seed=0)
    g = torch.Generator().manual_seed(0)
    torch.randn(1, 128, 32, generator=g)  # the features
    level_embeds = torch.randn(4, 32, generator=g)
    pos = kwargs["query_pos"][0, :96] - level_embeds[0]  # level 0: 8x12, flattened row-major
    # y of row 0: (1 - 0.5) / 8 * 2π; the first feature is sin(y / 10000^0)
    y0, x1 = 0.5 / 8 * 2 * math.pi, 1.5 / 12 * 2 * math.pi
    assert math.isclose(pos[0, 0].item(), math.sin(y0), abs_tol=1e-5)
    assert math.isclose(pos[0, 1].item(), math.cos(y0), abs_tol=1e-5)
    assert math.isclose(pos[1, 16].item(), math.sin(x1), abs_tol=1e-5)  # token (0, 1): x part starts at C/2


def test_dtype_device_seed_requires_grad():
    a = detrex_encoder_kwargs(canvas=(64, 96), batch_size=2, embed_dim=32, dtype=torch.bfloat16, requires_grad=True)
    b = detrex_encoder_kwargs(canvas=(64, 96), batch_size=2, embed_dim=32, dtype=torch.bfloat16)
    c = detrex_encoder_kwargs(canvas=(64, 96), batch_size=2, embed_dim=32, seed=1)
    assert a["query"].dtype == torch.bfloat16 and a["query"].requires_grad and a["query_pos"].requires_grad
    assert a["reference_points"].dtype == a["valid_ratios"].dtype == torch.float32
    assert torch.equal(a["query"], b["query"])
    assert not torch.equal(b["query"].float(), c["query"])


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_sizes=[(64, 96)], embed_dim=31), "even"),
    (dict(image_sizes=None), "image_sizes or canvas"),
    (dict(image_sizes=[(64, 96)], canvas=(32, 32)), "does not fit"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        detrex_encoder_kwargs(**kwargs)


def test_tiny_image_keeps_a_valid_pixel_per_level():
    kwargs = detrex_encoder_kwargs([(64, 96), (8, 8)], embed_dim=32)
    assert (kwargs["valid_ratios"] > 0).all()
    assert torch.isfinite(kwargs["reference_points"]).all()

