"""The built-in layouts equal the key lists dumped from the instantiated models."""
import pytest

from lite_detr_plugin.checkpoint import lite_dino_layout, official_layout

from .helpers import CHECKPOINTS, load_layout


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_official_layout_matches_released_model(name):
    assert official_layout(CHECKPOINTS[name]) == load_layout("official", name)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_lite_dino_layout_matches_detrex_model(name):
    layout = lite_dino_layout(CHECKPOINTS[name])
    expected = load_layout("target", name)
    assert list(layout) == list(expected)
    assert layout == expected


def test_layouts_differ_only_by_blocks_not_by_H():
    assert official_layout("H2L2-(2+1)x3") == official_layout("H3L1-(2+1)x3")
    assert official_layout("H3L1-(6+1)x1") != official_layout("H3L1-(2+1)x3")
