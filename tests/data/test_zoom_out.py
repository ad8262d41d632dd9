"""Zoom-out: hand-computed placements, and boxes that match the pixels they enclose after a random zoom-out."""
import numpy as np
import pytest

from lite_detr_plugin.data.zoom_out import ZoomOutTransform


def _image():
    return np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) + 1  # no zero pixel


def test_image_lands_at_offset_on_fill():
    t = ZoomOutTransform(h=2, w=3, canvas_h=5, canvas_w=6, x0=1, y0=2, fill=(7, 8, 9))
    out = t.apply_image(_image())
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[2:4, 1:4], _image())
    expected_fill = np.ones((5, 6, 3), np.uint8) * np.array([7, 8, 9], np.uint8)
    outside = np.ones((5, 6), bool)
    outside[2:4, 1:4] = False
    np.testing.assert_array_equal(out[outside], expected_fill[outside])


def test_boxes_polygons_masks_move_exactly():
    t = ZoomOutTransform(h=2, w=3, canvas_h=5, canvas_w=6, x0=1, y0=2)
    # box [x1, y1, x2, y2] covering the whole image -> the pasted region, by hand
    np.testing.assert_array_equal(t.apply_box(np.array([[0.0, 0.0, 3.0, 2.0]])), [[1.0, 2.0, 4.0, 4.0]])
    np.testing.assert_array_equal(t.apply_box(np.array([[0.5, 0.25, 2.0, 1.5]])), [[1.5, 2.25, 3.0, 3.5]])
    polygon = np.array([[0.0, 0.0], [3.0, 0.0], [1.5, 2.0]])
    np.testing.assert_array_equal(t.apply_polygons([polygon])[0], [[1.0, 2.0], [4.0, 2.0], [2.5, 4.0]])
    mask = np.array([[1, 0, 0], [1, 1, 0]], dtype=np.uint8)
    out = t.apply_segmentation(mask)
    assert out.shape == (5, 6) and out.sum() == 3
    np.testing.assert_array_equal(np.argwhere(out), [[2, 1], [3, 1], [3, 2]])
    # the inverse crops the image back and moves coordinates back
    np.testing.assert_array_equal(t.inverse().apply_image(t.apply_image(_image())), _image())
    np.testing.assert_array_equal(t.inverse().apply_coords(t.apply_coords(polygon)), polygon)


def test_integer_coordinates_become_float():
    t = ZoomOutTransform(h=2, w=3, canvas_h=4, canvas_w=4, x0=1, y0=1)
    out = t.apply_coords(np.array([[0, 0]]))
    assert out.dtype == np.float64 and out.tolist() == [[1.0, 1.0]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(h=2, w=3, canvas_h=3, canvas_w=6, x0=0, y0=2), "does not fit"),
        (dict(h=2, w=3, canvas_h=5, canvas_w=6, x0=-1, y0=0), "x0 and y0"),
        (dict(h=0, w=3, canvas_h=5, canvas_w=6, x0=0, y0=0), "h must be"),
    ],
)
def test_bad_geometry_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ZoomOutTransform(**kwargs)


def test_wrong_image_size_or_fill_is_refused():
    t = ZoomOutTransform(h=2, w=3, canvas_h=5, canvas_w=6, x0=1, y0=2, fill=(1, 2))
    with pytest.raises(ValueError, match="the image must be 2x3"):
        t.apply_image(np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="fill has 2 values"):
        t.apply_image(_image())


# -- the detectron2 Augmentation ------------------------------------------------


@pytest.mark.detrex
def test_random_zoom_out_probability_and_ratio():
    import detectron2.data.transforms as T

    from lite_detr_plugin.data.augmentation import RandomZoomOut

    image = np.full((20, 30, 3), 255, np.uint8)
    assert isinstance(RandomZoomOut(p=0.0).get_transform(image), T.NoOpTransform)
    np.random.seed(0)
    sizes = set()
    for _ in range(50):
        t = RandomZoomOut(p=1.0, max_ratio=3.0, fill=0).get_transform(image)
        assert isinstance(t, ZoomOutTransform)
        assert 20 <= t.canvas_h <= 60 and 30 <= t.canvas_w <= 90
        assert abs(t.canvas_h / 20 - t.canvas_w / 30) < 0.1  # same ratio for both sides
        sizes.add((t.canvas_h, t.canvas_w))
    assert len(sizes) > 10
    with pytest.raises(ValueError, match="max_ratio must be >= 1"):
        RandomZoomOut(max_ratio=0.5)
    with pytest.raises(ValueError, match="p must be in"):
        RandomZoomOut(p=1.5)


@pytest.mark.detrex
def test_random_zoom_out_boxes_enclose_their_pixels():
    """A coloured rectangle drawn at its box: after a random zoom-out through detectron2's
    annotation code, the box still is the exact extent of that colour, inside the canvas."""
    import detectron2.data.transforms as T
    from detectron2.data import detection_utils as utils
    from detectron2.structures import BoxMode
    from pycocotools import mask as mask_util

    from lite_detr_plugin.data.augmentation import RandomZoomOut

    rng = np.random.default_rng(0)
    np.random.seed(1)
    for _ in range(20):
        h, w = rng.integers(10, 40, size=2)
        x1, y1 = rng.integers(0, w - 3), rng.integers(0, h - 3)
        x2, y2 = rng.integers(x1 + 1, w + 1), rng.integers(y1 + 1, h + 1)
        image = np.zeros((h, w, 3), np.uint8)
        image[y1:y2, x1:x2] = (255, 0, 0)
        mask = np.zeros((h, w), np.uint8)
        mask[y1:y2, x1:x2] = 1
        annotation = {"bbox": [x1, y1, x2, y2], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
                      "segmentation": mask_util.encode(np.asfortranarray(mask))}  # COCO RLE
        aug_input = T.AugInput(image)
        transforms = T.AugmentationList([RandomZoomOut(p=1.0, max_ratio=2.5, fill=(0, 0, 255))])(aug_input)
        out = aug_input.image
        moved = utils.transform_instance_annotations(dict(annotation), transforms, out.shape[:2])
        ys, xs = np.nonzero((out == (255, 0, 0)).all(-1))
        np.testing.assert_array_equal(moved["bbox"], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert 0 <= moved["bbox"][0] and moved["bbox"][2] <= out.shape[1]
        assert 0 <= moved["bbox"][1] and moved["bbox"][3] <= out.shape[0]
        np.testing.assert_array_equal(np.nonzero(moved["segmentation"]), (ys, xs))
        assert (out == (0, 0, 255)).all(-1).sum() == out.shape[0] * out.shape[1] - h * w  # the canvas is fill
