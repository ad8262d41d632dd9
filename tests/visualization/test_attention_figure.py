"""Fig. 5 geometry and panels on a hand-built record (PyTorch + matplotlib; no detectron2)."""
import numpy as np
import pytest
import torch
from PIL import Image

from lite_detr_plugin.visualization import AttentionRecord
from lite_detr_plugin.visualization.attention_figure import (
    FigureRow,
    ImageGeometry,
    draw_figure,
    panel_points,
    query_for_point,
    select_record,
)

# 4 levels of a 64×96 input (strides 8, 16, 32, 64), drawn on a 128×192 original image.
SHAPES = torch.tensor([[8, 12], [4, 6], [2, 3], [1, 2]])
STARTS = torch.tensor([0, 96, 120, 126])
GEOMETRY = ImageGeometry(original_size=(128, 192), input_size=(64, 96), padded_size=(64, 96))


def _record(query_start=96, num_query=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(1, num_query, 2, 4, 3, generator=g)
    weights = weights / weights.sum((-2, -1), keepdim=True)
    locations = torch.rand(1, num_query, 2, 4, 3, 2, generator=g)
    return AttentionRecord("transformer.encoder.layers.0.self_attn", "kda", 0, locations, weights, SHAPES, STARTS,
                           query_start)


def test_locations_map_to_original_pixels():
    # x = 0.5 of level 1 (W = 6, stride 16) is input pixel 48, original pixel 96; y = 0.25 of H = 4 -> 16 -> 32
    pixels = GEOMETRY.to_pixels(torch.tensor([[0.5, 0.25], [1.0, 1.0]]), torch.tensor([1, 3]), SHAPES)
    np.testing.assert_allclose(pixels, [[96.0, 32.0], [2 * 64 * 2, 1 * 64 * 2]])
    assert GEOMETRY.strides(SHAPES) == [8.0, 16.0, 32.0, 64.0]


def test_query_for_point_picks_the_s1_token_under_it():
    record = _record()
    # S1 is level 3: 1×2 tokens of 64 input pixels = 128 original pixels each
    token, centre = query_for_point(record, GEOMETRY, (150.0, 10.0))
    assert token == 126 + 1
    np.testing.assert_allclose(centre, [192.0, 64.0])
    token, _ = query_for_point(record, GEOMETRY, (-5.0, 500.0))  # clipped to the map
    assert token == 126


def test_select_record_takes_the_last_layer_querying_the_token():
    low = _record(query_start=0, num_query=96)
    high_1, high_2 = _record(query_start=96), _record(query_start=96, seed=1)
    assert select_record([high_1, low, high_2, low], 127) is high_2
    assert select_record([high_1, low, high_2, low], 127, layer=0) is high_1
    with pytest.raises(ValueError, match="has no query at token 127"):
        select_record([high_1, low], 127, layer=1)
    with pytest.raises(ValueError, match="S1"):
        select_record([low], 127)


def test_panels_hold_the_top_weights():
    record = _record()
    panels = panel_points(record, GEOMETRY, token=127, top_query=5, top_scale=7)
    query = 127 - 96
    expected = record.weights[0, query].flatten().topk(5).values.numpy()
    np.testing.assert_allclose(panels["a"]["weight"], expected)
    # panel (c): S4 = level 0, over all queries
    level0 = record.weights[0, :, :, 0].flatten().topk(7).values.numpy()
    np.testing.assert_allclose(panels["c"]["weight"], level0)
    assert (panels["c"]["level"] == 0).all() and (panels["b"]["level"] == 1).all()
    # the strongest point of (a), mapped by hand
    m, level, p = np.unravel_index(int(record.weights[0, query].flatten().argmax()), (2, 4, 3))
    x, y = record.locations[0, query, m, level, p].tolist()
    h, w = SHAPES[level].tolist()
    stride = [8, 16, 32, 64][level]
    np.testing.assert_allclose(panels["a"]["xy"][0], [x * w * stride * 2, y * h * stride * 2], rtol=1e-6)


def test_draw_figure_writes_a_png(tmp_path):
    image = np.full((128, 192, 3), 200, np.uint8)
    rows = [FigureRow("msda", _record(), 127, np.array([192.0, 64.0])),
            FigureRow("kda", _record(seed=2), 127, np.array([192.0, 64.0]))]
    path = draw_figure(image, rows, GEOMETRY, str(tmp_path / "fig.png"), top_query=10, top_scale=20)
    with Image.open(path) as png:
        png.verify()
    with Image.open(path) as png:
        width, height = png.size
    assert width > height  # 3 panels across, 2 rows
    with pytest.raises(ValueError, match="no rows"):
        draw_figure(image, [], GEOMETRY, str(tmp_path / "none.png"))
